"""From a response body to rows: the records path, the field map and the column types.

A record that cannot fill its columns (a missing primary key, a required field missing,
a value of the wrong type, a timestamp no format expresses) is not loaded stripped: it
becomes a ``Rejected`` with the reason and the raw record, for the quarantine.
Timestamps go through ``etl.timestamps.to_utc`` (the same normalizer as every source).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from etl.errors import TimestampError
from etl.rest.spec import Column, StreamSpec
from etl.timestamps import to_utc

Row = tuple[Any, ...]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    payload: str  # the record as JSON text


class BadRecords(ValueError):
    """The body does not hold a list of records where the spec says."""


def records_at(body: Any, path: Sequence[str]) -> list[Any]:
    node = body
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise BadRecords(f"no {'.'.join(path)!r} in the response")
        node = node[part]
    if node is None:
        return []
    if not isinstance(node, list):
        raise BadRecords(f"{'.'.join(path) or 'the body'} is not a list of records")
    return node


def _get(record: Any, path: Sequence[str]) -> Any:
    node = record
    for part in path:
        if not isinstance(node, dict):
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


class _Invalid(ValueError):
    pass


def _text(column: Column, value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _integer(column: Column, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"{column.name}: expected an integer")
    try:
        number = int(value)
    except ValueError as exc:
        raise _Invalid(f"{column.name}: expected an integer") from exc
    limit = 2**31 if column.type == "integer" else 2**63
    if not -limit <= number < limit:
        raise _Invalid(f"{column.name}: {number} is out of range for {column.type}")
    return number


def _number(column: Column, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"{column.name}: expected a number")
    try:
        return float(value)
    except ValueError as exc:
        raise _Invalid(f"{column.name}: expected a number") from exc


def _boolean(column: Column, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _Invalid(f"{column.name}: expected true or false")
    return value


def _timestamp(column: Column, value: Any) -> Any:
    try:
        return to_utc(value)
    except (TimestampError, ValueError, TypeError, OverflowError) as exc:
        raise _Invalid(f"{column.name}: not a timestamp") from exc


def _json(column: Column, value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False)


def _uuid(column: Column, value: Any) -> Any:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise _Invalid(f"{column.name}: not a uuid") from exc


_CONVERTERS: dict[str, Callable[[Column, Any], Any]] = {
    "text": _text,
    "integer": _integer,
    "bigint": _integer,
    "number": _number,
    "uuid": _uuid,
    "boolean": _boolean,
    "timestamp": _timestamp,
}


def _convert(column: Column, value: Any) -> Any:
    """``value`` as its column's type stores it, or ``_Invalid`` saying why not."""
    return _CONVERTERS.get(column.type, _json)(column, value)


def to_row(stream: StreamSpec, record: Any) -> Row | Rejected:
    if not isinstance(record, dict):
        return Rejected("not an object", json.dumps(record, ensure_ascii=False))
    out: list[Any] = []
    try:
        for column in stream.columns:
            value = _get(record, column.source)
            if column.exists:
                out.append(value is not _MISSING and value is not None)
                continue
            if value is _MISSING or value is None:
                if not column.nullable or column.name in stream.primary_key:
                    raise _Invalid(f"{column.name}: missing")
                out.append(None)
                continue
            out.append(_convert(column, value))
    except _Invalid as exc:
        return Rejected(str(exc), json.dumps(record, ensure_ascii=False, default=str))
    return tuple(out)


def cursor_text(value: Any) -> str:
    """A cursor value as stored in the progress row (timestamps as ISO 8601 UTC)."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def cursor_param(stored: str, column: Column, lookback_s: float) -> str:
    """The value to send for the incremental parameter: the stored cursor minus look-back."""
    if column.type == "timestamp":
        when = to_utc(stored) - dt.timedelta(seconds=lookback_s)
        text = when.isoformat(timespec="seconds" if when.microsecond == 0 else "microseconds")
        return text.replace("+00:00", "Z")
    if column.type in ("integer", "bigint"):
        return str(int(stored) - int(lookback_s))
    return stored
