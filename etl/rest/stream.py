"""A declared REST stream as a pipeline ``Source``: its ``Stream``, one lane, one chain.

``rest_stream`` turns a ``StreamSpec`` into the engine's ``Stream`` (split ``incremental``
when the spec names a cursor field, else ``cursor_chain``; a child stream's chain walks its
parent's rows, ``etl.rest.parents``). ``RestTransform`` is its page
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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from etl.errors import ConfigError, PermanentSourceError, SourceError
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
from etl.rest.parents import ParentRow, Parents, child_path
from etl.rest.records import BadRecords, Rejected, cursor_text, records_at, to_row
from etl.rest.spec import StreamSpec
from etl.rest.sync import first_request, typed_cursor, typed_value

MAX_RESETS = 3
PARENT_BATCH = 100  # a child stream reads its parent's rows this many at a time


class RestTransform:
    """Records of one declared stream -> rows; tracks the chain's mark."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        inc = spec.incremental
        # a child's mark is its parent's cursor (``reached``), not its records' cursor
        self._child = spec.parent is not None
        self._cursor_i = spec.columns.index(spec.column(inc.cursor_field)) if inc else -1
        if self._child:
            self._cursor_i = -1
        self.ordered = False if self._child else (inc.ordered if inc is not None else True)
        self.committed: str | None = None  # the stored mark this run started from
        self.seen: Any = None

    def begin(self, committed: str | None) -> None:
        """The run starts from the stream's stored mark."""
        self.committed = committed
        if self.spec.parent is not None:
            self.seen = typed_value(self.spec.parent.cursor_type, committed)
        else:
            self.seen = typed_cursor(self.spec, committed)

    def reached(self, parent_cursor: str) -> None:
        """A child read a parent row with this cursor value: the mark once the chain ends."""
        assert self.spec.parent is not None
        value = typed_value(self.spec.parent.cursor_type, parent_cursor)
        if value is not None and (self.seen is None or value > self.seen):
            self.seen = value

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
        if (i >= 0 or self._child) and self.seen is not None:
            out.mark = cursor_text(self.seen)
        return out


def rest_stream(spec: StreamSpec, transform: RestTransform | None = None) -> Stream:
    """The engine's view of a declared stream."""
    inc = spec.incremental
    hook = transform or RestTransform(spec)
    return Stream(
        name=spec.name,
        columns=tuple(StreamColumn(c.name, c.type, c.nullable) for c in spec.columns),
        primary_key=spec.primary_key,
        transform=hook,
        split="incremental" if inc is not None else "cursor_chain",
        table=spec.table,
        ordered=hook.ordered,
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
        parents: Parents | None = None,
    ) -> None:
        """``should_stop`` is asked before every page after the first; True calls ``stop``
        (the run's stop: the pages before it are committed) and waits for it. ``parents``:
        a child stream's parent rows (``etl.rest.parents``)."""
        self.name = spec.name
        self.client = client
        self.spec = spec
        self.base_url = base_url
        self.transform = transform
        self.should_stop = should_stop
        self.stop = stop
        self.parents = parents
        self._queue: deque[ParentRow] = deque()
        self.resets = 0
        self._resets_in_row = 0  # since a following page last arrived
        self._fetched = False  # a page arrived in this run: stored requests are its own

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
        state = json.loads(shard.cursor) if shard.cursor else None
        if state is not None and self.should_stop():
            self.stop()
            await asyncio.Event().wait()  # the run's stop abandons this wait
        if self.spec.parent is not None:
            return await self._child_page(state, gate)
        stored = Request.from_json(state)
        request, body, headers, records = await self._get(stored, self._first, gate)
        following = paginate.next_request(self.spec.paginator, request, headers, body, len(records))
        nxt = json.dumps(self.client.storable(following).to_json()) if following else None
        return Page(records, following is not None, nxt)

    async def _get(
        self,
        stored: Request | None,
        first: Callable[[], Request],
        gate: Callable[[], Awaitable[None]] | None,
    ) -> tuple[Request, Any, dict[str, str], list[Any]]:
        """One page: the stored request, else ``first()``. A stored request from an earlier
        run that the API refuses, or a ``reset_pagination``, starts again at ``first()``, at
        most ``MAX_RESETS`` times before a following page arrives; a refusal of this run's
        own next page is the stream's failure (a ``fail`` rule, a 4xx), never a loop."""
        request, resumed = stored or first(), stored is not None and not self._fetched
        while True:
            try:
                page = await self.client.fetch(self.spec, request, acquired=True)
                break
            except (ResetPagination, PermanentSourceError) as exc:
                again = isinstance(exc, ResetPagination) or resumed
                if not again or self._resets_in_row >= MAX_RESETS:
                    raise
                self._resets_in_row += 1
                resumed, stored, request = False, None, first()
                self.resets += 1
                await self.client.budget.acquire()
        self._fetched = True
        if stored is not None:
            self._resets_in_row = 0  # a following page arrived: past the reset
        if gate is not None:
            await gate()
        try:
            records = records_at(page.body, self.spec.records)
        except BadRecords as exc:
            raise SourceError(f"{self.spec.name}: {exc}") from exc
        return request, page.body, page.headers, records

    # -- a child stream: the pages of each parent row in turn (etl.rest.parents) ----------
    async def _child_page(self, state: Any, gate: Callable[[], Awaitable[None]] | None) -> Page:
        row = ParentRow.from_json(state.get("parent")) if isinstance(state, dict) else None
        stored = Request.from_json(state.get("request")) if row is not None else None
        if row is None:
            row = await self._next_parent(None)
            if row is None:
                return Page([], False, None)  # no parent changed since the mark
        parent = row
        request, body, headers, records = await self._get(
            stored, lambda: self._first_for(parent), gate
        )
        self.transform.reached(row.position[0])
        following = paginate.next_request(self.spec.paginator, request, headers, body, len(records))
        if following is None:
            nxt = await self._next_parent(row.position)
            if nxt is None:
                return Page(records, False, None)
            row, following = nxt, self._first_for(nxt)
        state = {"parent": row.to_json(), "request": self.client.storable(following).to_json()}
        return Page(records, True, json.dumps(state))

    def _first_for(self, row: ParentRow) -> Request:
        spec = replace(self.spec, path=child_path(self.spec.path, row))
        return first_request(spec, self.base_url, self.transform.restart_from())

    async def _next_parent(self, after: tuple[str, ...] | None) -> ParentRow | None:
        if self.parents is None:
            raise ConfigError(f"{self.spec.name}: a child stream needs its parent's rows")
        if not self._queue:
            since = self.transform.committed
            self._queue.extend(await self.parents.after(after, since, PARENT_BATCH))
        return self._queue.popleft() if self._queue else None


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
