"""Reading one declared stream into its table, page by page, resumable at every page.

A run starts where the stream's progress row says: at the stored next request when the
previous run stopped mid-way (page-level resume), else at the first page, asking only for
records changed since the stored cursor minus the look-back. Each page's rows, rejects
and the new position commit together (``StreamStore.write_page``). For a stream whose
records arrive in cursor order the cursor advances with every page; otherwise only when
the stream's last page is committed. A stored next request the API no longer accepts, or
a ``reset_pagination`` rule, restarts the pagination from the committed cursor (at most
three times in a row), never from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from etl.errors import EtlError, PermanentSourceError, SourceError
from etl.rest import paginate
from etl.rest.client import ResetPagination, RestClient
from etl.rest.paginate import Request
from etl.rest.records import (
    BadRecords,
    Rejected,
    Row,
    cursor_param,
    cursor_text,
    records_at,
    to_row,
)
from etl.rest.spec import StreamSpec
from etl.timestamps import to_utc

MAX_RESETS = 3


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


class Store(Protocol):
    async def state(self, stream: StreamSpec) -> Any: ...

    async def begin(self, stream: StreamSpec) -> None: ...

    async def write_page(
        self,
        stream: StreamSpec,
        rows: list[Row],
        rejected: list[Rejected],
        cursor: str | None,
        next_request: Any,
    ) -> int: ...

    async def finish(self, stream: StreamSpec, status: str, error: str | None = None) -> None: ...


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


def _typed(stream: StreamSpec, text: str | None) -> Any:
    if text is None or stream.incremental is None:
        return None
    kind = stream.column(stream.incremental.cursor_field).type
    if kind == "timestamp":
        return to_utc(text)
    if kind in ("integer", "bigint"):
        return int(text)
    return text


async def sync_stream(
    client: RestClient,
    store: Store,
    stream: StreamSpec,
    base_url: str,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> StreamResult:
    result = StreamResult(stream.name)
    state = await store.state(stream)
    await store.begin(stream)
    try:
        await _run(client, store, stream, base_url, state, result, should_stop)
    except EtlError as exc:
        result.status, result.error = "failed", str(exc)
        await store.finish(stream, "failed", str(exc))
        raise
    await store.finish(stream, result.status)
    return result


async def _run(
    client: RestClient,
    store: Store,
    stream: StreamSpec,
    base_url: str,
    state: Any,
    result: StreamResult,
    should_stop: Callable[[], bool],
) -> None:
    inc = stream.incremental
    cursor_i = stream.columns.index(stream.column(inc.cursor_field)) if inc else -1
    committed = state.cursor  # text, as stored
    seen = _typed(stream, committed)
    request = Request.from_json(state.next_request)
    resumed = request is not None
    if request is None:
        request = first_request(stream, base_url, committed)
    resets = 0
    while True:
        try:
            page = await client.fetch(stream, request)
        except (ResetPagination, PermanentSourceError) as exc:
            if not (isinstance(exc, ResetPagination) or resumed) or resets >= MAX_RESETS:
                raise
            resets += 1
            result.resets += 1
            resumed = False
            request = first_request(stream, base_url, committed)
            continue
        resumed = False
        try:
            records = records_at(page.body, stream.records)
        except BadRecords as exc:
            raise SourceError(f"{stream.name}: {exc}") from exc
        rows: list[Row] = []
        rejected: list[Rejected] = []
        for record in records:
            row = to_row(stream, record)
            if isinstance(row, Rejected):
                rejected.append(row)
                continue
            rows.append(row)
            if inc is not None and row[cursor_i] is not None:
                seen = row[cursor_i] if seen is None else max(seen, row[cursor_i])
        following = paginate.next_request(
            stream.paginator, request, page.headers, page.body, len(records)
        )
        if inc is not None and (inc.ordered or following is None) and seen is not None:
            committed = cursor_text(seen)
        result.inserted += await store.write_page(
            stream,
            rows,
            rejected,
            committed,
            client.storable(following).to_json() if following else None,
        )
        resets = 0
        result.pages += 1
        result.rows += len(rows)
        result.quarantined += len(rejected)
        if following is None:
            result.status = "succeeded"
            return
        if should_stop():
            result.status = "partial"
            return
        request = following
