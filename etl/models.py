"""Plain data types and the Protocols that connect the pipeline to its parts.

Nothing here does I/O. ``pipeline`` and ``etl.wiring`` depend on these Protocols only, so
another source, destination or state store drops in without touching them:

    Stream       what a source feeds: columns, key, split kind, the page -> rows hook
    Source       where a stream's records come from: ``start()``, ``head()``, ``lanes()``
    Lane         one way of fetching pages with its own budget
    Destination  where a batch of records goes: ``write(batch) -> WriteResult``
    StateStore   the sync's state: the lock, runs, shards and their heartbeat
    Reporter     progress for a person or a log

``PostgresSink`` is both a Destination and a StateStore: it commits a batch and its shard's
checkpoint in ONE transaction, which is what makes a load exactly-once. A destination that
cannot hold our checkpoint in its own transaction pairs with a StateStore that can (an
outbox); the pipeline does not care. ``tests/fakes.py`` implements each in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, get_args

if TYPE_CHECKING:
    from etl.identity import SourceIdentity

ZERO_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the API's order (timestamp DESC, id DESC): the last event handled."""

    ts_ms: int
    id: str = ZERO_ID


@dataclass(frozen=True, slots=True)
class Page:
    """One decoded response of a list endpoint: the stream's records as the lane decoded
    them (its ``Stream.transform`` turns them into rows)."""

    events: list[Any]
    has_more: bool
    next_cursor: str | None
    total: int | None = None
    # The position the API's cursor names (its last event, to the exact millisecond even
    # when the event's own timestamp was sent in whole seconds); None if it cannot be read.
    cursor_position: Position | None = None


# One row of a stream, in the order of its ``Stream.columns``.
Record: TypeAlias = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An event that could not be made valid, kept with its reason."""

    reason: str
    payload: str  # the event as received, JSON text
    event_id: str | None = None
    # the required fields it lacked (an incomplete event: a complete copy may come later)
    missing: tuple[str, ...] = ()


ColumnType = Literal["text", "integer", "bigint", "number", "boolean", "timestamp", "json", "uuid"]
# How a stream is ordered and cut into independently resumable pieces:
#   time_range    newest first by (timestamp, id); shards are time slices, split when busy
#   cursor_chain  one chain of next-page requests, not splittable
#   incremental   a cursor chain that asks only for what changed since a cursor field's value
SplitKind = Literal["time_range", "cursor_chain", "incremental"]


@dataclass(frozen=True, slots=True)
class StreamColumn:
    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(slots=True)
class TransformResult:
    """One page of a stream as its ``transform`` judged it."""

    records: list[Record] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    last: Position | None = None  # last record in page order with a valid (ts, id)
    min_ts: int | None = None  # smallest ts_ms among the records ``last`` considers
    out_of_range: int = 0  # outside (lower_ts, upper_ts]: owned by another shard
    duplicates: int = 0  # repeated keys within the page (first one kept)
    shard_id: str | None = None
    # lacking required fields: re-read for a complete copy, else quarantined
    incomplete: list[Quarantined] = field(default_factory=list)
    # incremental streams: the highest cursor-field value read so far in the chain (text)
    mark: str | None = None

    @property
    def positions(self) -> tuple[Position | None, int | None]:
        return self.last, self.min_ts


class PageTransform(Protocol):
    """A stream's hook: one page's raw records -> rows, rejects and where the page ends.

    Pure. Keeps only records inside the shard's ``(lower_ts, upper_ts]`` (None: unbounded),
    counting the others ``out_of_range``; a record larger than ``max_text`` characters is
    quarantined. The pipeline turns the result into a batch and its checkpoint
    (``etl.batching.advance``)."""

    def __call__(
        self,
        records: list[Any],
        *,
        shard_id: str | None,
        lower_ts: int | None,
        upper_ts: int | None,
        max_text: int,
    ) -> TransformResult: ...


@dataclass(frozen=True, slots=True)
class Stream:
    """What the engine knows of a stream: its table, its key, how it is cut, and the hook
    that turns its pages into rows. The pipeline, batching, loading and planning take it as
    data and assume nothing else about a source.

    ``boundary_slack_ms``: a shard's lower bound is widened by this much when a page is
    judged (a source whose timestamps may read early, e.g. sent in whole seconds)."""

    name: str
    columns: tuple[StreamColumn, ...]
    primary_key: tuple[str, ...]
    transform: PageTransform
    split: SplitKind = "time_range"
    boundary_slack_ms: int = 0
    table: str = ""  # "": the stream's name
    # incremental: records arrive in cursor order, so each page commits the mark (else
    # only the chain's last page does)
    ordered: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def key_index(self) -> int:
        """Where a row holds the (first) primary-key column."""
        return self.column_names.index(self.primary_key[0])


ShardStatus = Literal["pending", "running", "done"]
# how a run ended; incomplete: every shard done, yet fewer events than the source states
FinalStatus = Literal["succeeded", "partial", "failed", "incomplete"]
RunStatus = Literal["running", FinalStatus]
FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)
Strategy = Literal["auto", "events", "feed"]  # which lanes a source may use


@dataclass(slots=True)
class ShardState:
    """One independently resumable slice of the stream: events with lower_ts < ts <= upper_ts.

    ``lower_ts`` None means "down to the oldest event"; ``upper_ts`` None means "from the
    newest event". ``position`` is the last committed event; ``cursor`` the API's cursor
    after it (None when it must be rebuilt from ``position``).
    """

    shard_id: str
    lower_ts: int | None
    upper_ts: int | None
    position: Position | None = None
    cursor: str | None = None
    status: ShardStatus = "pending"
    events: int = 0
    pages: int = 0
    # this run's reading so far (not stored): the events in range its pages held and the
    # time they spanned, i.e. the shard's density (``planner.split`` cuts at a page's end)
    fetched: int = field(default=0, compare=False)
    fetched_ms: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a shard stands after a batch; written in the batch's transaction."""

    shard_id: str
    position: Position | None
    cursor: str | None
    done: bool
    pages: int  # pages this batch covers (added to the shard's counter)
    # an incremental stream's cursor-field value (text) that this batch makes committed;
    # None leaves the stored one
    mark: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    records: list[Record]
    quarantined: list[Quarantined]
    checkpoint: Checkpoint
    received: int  # events in the page(s), valid or not
    # received = records + quarantined + out_of_range + repeats
    out_of_range: int = 0  # outside the shard's bounds: another shard's to load
    repeats: int = 0  # an id seen earlier in the same page (first one kept)
    # a re-sync over kept rows (--full-refresh, or after `etl reset`): a loaded row whose
    # content differs from this copy is replaced by it, instead of the first copy winning
    overwrite: bool = False


LoadedBy = Literal["copy", "upsert"]  # straight into the table, or through a stage


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    quarantined: int
    # stripped rows (NULL where the event has a value) completed in place by this batch
    repaired: int = 0
    # incomplete events quarantined earlier whose complete copy this batch loaded
    resolved: int = 0
    # loaded rows replaced by this batch's differing copy (``Batch.overwrite``)
    refreshed: int = 0
    # how the events went in: "copy" straight into the table, or "upsert" through a stage
    loaded_by: LoadedBy = "upsert"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One batch as recorded in ``delivery_log`` (also passed to the
    sink's ``on_delivery`` hook, e.g. ``etl.delivery.DeliveryLog``)."""

    run_id: int | None
    shard_id: str
    provider: str
    sent_at: dt.datetime
    duration_ms: float
    rows_received: int
    rows_written: int
    duplicates: int
    quarantined: int
    columns: tuple[str, ...]
    success: bool
    error: str | None
    loaded_by: LoadedBy | None = None  # None for a failed batch


@dataclass(slots=True)
class RunCounters:
    """Live figures of one run; the pipeline updates, reporters and the runs table read.

    Of the events written: ``received = inserted + duplicates + quarantined + out_of_range``
    (duplicates: already in the table, or repeated on a page; out of range: on a page of
    one shard but inside another's time range, which loads it).
    """

    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    cursor_resets: int = 0
    pages: int = 0
    out_of_range: int = 0
    extra: dict[str, int] = field(default_factory=dict)


# The counter columns of a run, in RunCounters' order (``extra`` aside).
RUN_COUNTERS: tuple[str, ...] = (
    "received",
    "inserted",
    "duplicates",
    "quarantined",
    "requests",
    "retries",
    "rate_limited",
    "cursor_resets",
    "pages",
    "out_of_range",
)


class Clock(Protocol):
    """Time, injected: ``now()`` is monotonic seconds; ``sleep`` waits on this clock."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Lane(Protocol):
    """One way of fetching pages (an endpoint with its own budget), e.g. /events or the feed.

    The pipeline runs fetchers per lane (``concurrency`` at first, then as many as the lane
    can keep busy, ``etl.inflight``); each waits on ``acquire()`` before it takes a shard,
    so no shard sits idle behind a rate limit.
    """

    name: str
    concurrency: int

    async def acquire(self) -> float | None:
        """Wait for the budget; returns the request's ticket (give it to ``fetch``)."""
        ...

    def budget_ready(self) -> bool:
        """Whether ``acquire()`` would grant a request right now (the budget has room)."""
        ...

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Callable[[], Awaitable[None]] | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        """The next page of ``shard`` after its position (or from its upper bound).

        Retries transient failures itself; raises only what retrying cannot fix.
        ``gate`` is awaited when a successful response's headers are in, before its body
        is read (the caller takes a page credit there). With ``yield_throttled``, a 429 is
        raised (``RateLimited``, after the lane's limiter learnt from it) instead of waited
        out, so the caller can hand the shard to another lane.
        """
        ...


class Source(Protocol):
    """Where a stream's records come from. Knows HTTP, not SQL."""

    async def start(self) -> str:
        """Get ready (e.g. choose the lanes the API allows); a one-line description."""
        ...

    @property
    def strategy_used(self) -> str:
        """How ``start()`` chose to fetch (e.g. "feed+events"), recorded with the run."""
        ...

    async def head(self) -> tuple[Position | None, int | None]:
        """The newest event's position (None when empty) and the total the API reports."""
        ...

    async def contains(self, anchor: Position) -> bool:
        """Whether event ``anchor.id`` is in the source at ``anchor.ts_ms`` (within 1 s)."""
        ...

    def lanes(self) -> list[Lane]: ...

    @property
    def stream(self) -> Stream:
        """The stream it feeds: its table, key, split kind and page transform. A record
        its transform finds incomplete is a fault of that response: the page is re-read,
        and what stays incomplete is quarantined, never loaded stripped."""
        ...


@dataclass(frozen=True, slots=True)
class Tally:
    """What the table holds for the sync, from the progress counters (never a COUNT(*))."""

    events: int  # loaded by every shard, live or retired (rows kept by a reset included)
    quarantined: int  # distinct events that could not be made valid (and still are not)


class Destination(Protocol):
    """Where a batch's records go; reports what it did with them.

    ``write`` also makes the batch's checkpoint durable, atomically with the records (in
    the same transaction, or through an outbox): never one without the other. Writes of one
    shard arrive in order; writes of different shards may run concurrently.
    """

    async def write(self, batch: Batch) -> WriteResult: ...


class StateStore(Protocol):
    """The sync's state: the single-instance lock, the runs, the shards and their heartbeat."""

    async def try_lock(self) -> None:
        """Take the lock for this store's lifetime, or raise ``LockHeld`` at once."""
        ...

    def planning(self) -> AbstractAsyncContextManager[None]:
        """Held while a run plans: tasks sharing the state plan one at a time."""
        ...

    async def start_run(self, strategy: str) -> int:
        """Record a new running run (and mark dead ones failed); its id."""
        ...

    async def finish_run(
        self, status: FinalStatus, counters: RunCounters, error: str | None = None
    ) -> None: ...

    async def load_shards(self) -> list[ShardState]: ...

    async def add_shards(self, shards: list[ShardState]) -> None:
        """Record new shards; ids already known are left untouched."""
        ...

    async def tally(self) -> Tally: ...

    async def load_identity(self) -> SourceIdentity | None:
        """Which dataset the state belongs to (None: no state recorded one yet)."""
        ...

    async def save_identity(self, identity: SourceIdentity) -> None: ...

    async def reset_progress(self) -> int:
        """Retire every shard (a full re-sync follows); loaded rows stay. Returns how many."""
        ...

    async def repair_targets(self) -> list[int]:
        """Timestamps (epoch ms) of events held incomplete: stripped rows, or quarantined
        for lacking required fields. The run re-reads around them so they can be repaired."""
        ...

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        """Persist a split: ``shard`` now ends at ``new.upper_ts``; ``new`` is added. False,
        changing nothing, if ``shard`` is gone or done."""
        ...

    async def heartbeat(self, counters: RunCounters) -> None:
        """Store the run's counters; proves the run alive to `etl status`/`health`."""
        ...


class Reporter(Protocol):
    """Receives progress; display and logging implement it. Must not block."""

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None: ...

    def message(self, text: str) -> None: ...
