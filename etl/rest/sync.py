"""What a declared stream's run starts from and reports (the run itself is the pipeline's:
``etl.rest.stream`` makes a stream a pipeline ``Source``, ``etl.cli.pipeline_sync`` runs it).

``first_request``: the chain's first page, asking only for records changed since the stored
cursor minus the look-back (an incremental stream with a ``since``-like parameter).
``StreamResult``: one stream's run as `etl sync` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etl.rest import paginate
from etl.rest.paginate import Request
from etl.rest.records import (
    cursor_param,
)
from etl.rest.spec import StreamSpec
from etl.timestamps import to_utc


@dataclass
class StreamResult:
    stream: str
    status: str = "running"  # succeeded | partial | failed
    pages: int = 0
    rows: int = 0
    inserted: int = 0
    quarantined: int = 0
    resets: int = 0
    error: str | None = None


def first_request(stream: StreamSpec, base_url: str, cursor: str | None) -> Request:
    request = Request(base_url + stream.path, stream.params)
    inc = stream.incremental
    if inc is not None and inc.param is not None:
        value = (
            cursor_param(cursor, stream.column(inc.cursor_field), inc.lookback_s)
            if cursor is not None
            else inc.initial
        )
        if value is not None:
            request = request.with_params(**{inc.param: value})
    return paginate.first(stream.paginator, request)


def typed_cursor(stream: StreamSpec, text: str | None) -> Any:
    """A stored cursor value (text) as its column's type."""
    if text is None or stream.incremental is None:
        return None
    return typed_value(stream.column(stream.incremental.cursor_field).type, text)


def typed_value(kind: str, text: str | None) -> Any:
    """A cursor value (text) as a value of the column type ``kind``."""
    if text is None:
        return None
    if kind == "timestamp":
        return to_utc(text)
    if kind in ("integer", "bigint"):
        return int(text)
    return text
