"""Plain JSON values from the read side's dataclasses (for ``--json`` and for HTTP)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any


def iso(value: dt.datetime) -> str:
    """UTC ISO-8601 with a ``Z``."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses to dicts, datetimes to ISO text, tuples to
    lists, non-finite floats to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
