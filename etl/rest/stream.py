"""A declared REST stream as a pipeline ``Source``: its ``Stream``, one lane, one chain.

``rest_stream`` turns a ``StreamSpec`` into the engine's ``Stream`` (split ``incremental``
when the spec names a cursor field, else ``cursor_chain``). ``RestTransform`` is its page
hook: records -> typed rows (``etl.rest.records``), rejects to quarantine, and the mark (the
highest cursor value read so far in the chain). ``RestLane`` fetches the chain's next page:
the stored next request, else the first request asking for what changed since the mark
minus the look-back. A stored request the API no longer accepts, or a ``reset_pagination``
rule, restarts from the mark (at most ``MAX_RESETS`` times in a row), never from scratch.
The budget is the source's, shared by its streams (``etl.rest.budget``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from etl.errors import PermanentSourceError, SourceError
from etl.models import (
    Lane,
    Page,
    Position,
    Quarantined,
    ShardState,
    Stream,
    StreamColumn,
    TransformResult,
)
from etl.rest import paginate
from etl.rest.client import ResetPagination, RestClient
from etl.rest.paginate import Request
from etl.rest.records import BadRecords, Rejected, cursor_text, records_at, to_row
from etl.rest.spec import StreamSpec
from etl.rest.sync import first_request, typed_cursor

MAX_RESETS = 3


class RestTransform:
    """Records of one declared stream -> rows; tracks the chain's mark."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        inc = spec.incremental
        self._cursor_i = spec.columns.index(spec.column(inc.cursor_field)) if inc else -1
        self.ordered = inc.ordered if inc is not None else True
        self.committed: str | None = None  # the stored mark this run started from
        self.seen: Any = None

    def begin(self, committed: str | None) -> None:
        """The run starts from the stream's stored mark."""
        self.committed = committed
        self.seen = typed_cursor(self.spec, committed)

    def restart_from(self) -> str | None:
        """Where the chain starts again: past what an ordered stream has read, else at the
        mark the run started from (a later page may hold older values)."""
        if self.ordered and self.seen is not None:
            return cursor_text(self.seen)
        return self.committed

    def __call__(
        self,
        records: list[Any],
        *,
        shard_id: str | None,
        lower_ts: int | None,
        upper_ts: int | None,
        max_text: int,
    ) -> TransformResult:
        out = TransformResult(shard_id=shard_id)
        i = self._cursor_i
        for record in records:
            row = to_row(self.spec, record)
            if isinstance(row, Rejected):
                out.quarantined.append(Quarantined(row.reason, row.payload))
                continue
            out.records.append(row)
            if i >= 0 and row[i] is not None:
                self.seen = row[i] if self.seen is None else max(self.seen, row[i])
        if i >= 0 and self.seen is not None:
            out.mark = cursor_text(self.seen)
        return out


def rest_stream(spec: StreamSpec, transform: RestTransform | None = None) -> Stream:
    """The engine's view of a declared stream."""
    inc = spec.incremental
    return Stream(
        name=spec.name,
        columns=tuple(StreamColumn(c.name, c.type, c.nullable) for c in spec.columns),
        primary_key=spec.primary_key,
        transform=transform or RestTransform(spec),
        split="incremental" if inc is not None else "cursor_chain",
        table=spec.table,
        ordered=inc.ordered if inc is not None else True,
    )


class RestLane:
    """The chain's pages, one request at a time, under the source's shared budget."""

    concurrency = 1

    def __init__(
        self,
        client: RestClient,
        spec: StreamSpec,
        base_url: str,
        transform: RestTransform,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        stop: Callable[[], None] = lambda: None,
    ) -> None:
        """``should_stop`` is asked before every page after the first; True calls ``stop``
        (the run's stop: the pages before it are committed) and waits for it."""
        self.name = spec.name
        self.client = client
        self.spec = spec
        self.base_url = base_url
        self.transform = transform
        self.should_stop = should_stop
        self.stop = stop
        self.resets = 0

    async def acquire(self) -> float | None:
        await self.client.budget.acquire()
        return None

    def budget_ready(self) -> bool:
        return self.client.budget.ready()

    def _first(self) -> Request:
        return first_request(self.spec, self.base_url, self.transform.restart_from())

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Callable[[], Awaitable[None]] | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        stored = Request.from_json(json.loads(shard.cursor)) if shard.cursor else None
        if stored is not None and self.should_stop():
            self.stop()
            await asyncio.Event().wait()  # the run's stop abandons this wait
        request, resumed, resets = stored or self._first(), stored is not None, 0
        while True:
            try:
                page = await self.client.fetch(self.spec, request, acquired=True)
                break
            except (ResetPagination, PermanentSourceError) as exc:
                if not (isinstance(exc, ResetPagination) or resumed) or resets >= MAX_RESETS:
                    raise
                resets, resumed, request = resets + 1, False, self._first()
                self.resets += 1
                await self.client.budget.acquire()
        if gate is not None:
            await gate()
        try:
            records = records_at(page.body, self.spec.records)
        except BadRecords as exc:
            raise SourceError(f"{self.spec.name}: {exc}") from exc
        following = paginate.next_request(
            self.spec.paginator, request, page.headers, page.body, len(records)
        )
        nxt = json.dumps(self.client.storable(following).to_json()) if following else None
        return Page(records, following is not None, nxt)


class RestSource:
    """One declared stream as the pipeline's ``Source``."""

    def __init__(self, stream: Stream, lane: RestLane) -> None:
        self.stream = stream
        self._lane = lane

    async def start(self) -> str:
        return f"reading {self.stream.name}"

    @property
    def strategy_used(self) -> str:
        return "rest"

    async def head(self) -> tuple[Position | None, int | None]:
        return None, None  # a chain has no head to plan from

    async def contains(self, anchor: Position) -> bool:
        return False

    def lanes(self) -> list[Lane]:
        return [self._lane]
