"""In-memory parts for the real pipeline: a source, a destination and a state store.

They implement ``etl.models``' Protocols (mypy checks the test that wires them) and behave
as the real parts promise: the source pages newest first and never repeats an event within
a cursor chain; the destination keeps each id once and commits the batch's checkpoint with
its rows; the store keeps its own copies of the shards, as a database would.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from etl.errors import EtlError
from etl.identity import SourceIdentity
from etl.models import (
    Batch,
    Checkpoint,
    FinalStatus,
    Lane,
    Page,
    Position,
    Record,
    RunCounters,
    RunStatus,
    ShardState,
    Stream,
    Tally,
    WriteResult,
)
from etl.source.datasync import events_stream
from etl.sources.events import RawEvent

T0_MS = 1_769_541_612_369  # the newest event of the real dataset


def make_events(n: int, *, newest_ms: int = T0_MS, step_ms: int = 997) -> list[RawEvent]:
    """``n`` valid events, one every ``step_ms`` going back from ``newest_ms``."""
    return [
        RawEvent(
            id=str(uuid.UUID(int=newest_ms - i * step_ms)),
            type="page_view",
            name=f"page {i}",
            timestamp=newest_ms - i * step_ms,
        )
        for i in range(n)
    ]


def _key(ev: RawEvent) -> tuple[int, str]:
    return (int(ev.timestamp), str(ev.id))


class FakeLane:
    """A lane with no budget to wait for; ``fail`` makes every fetch raise it."""

    def __init__(self, source: FakeSource, name: str, concurrency: int) -> None:
        self.source = source
        self.name = name
        self.concurrency = concurrency
        self.fail: EtlError | None = None
        self.requests = 0

    async def acquire(self) -> float | None:
        return None

    def budget_ready(self) -> bool:
        return True

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Callable[[], Awaitable[None]] | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        self.requests += 1
        if self.fail is not None:
            raise self.fail
        if gate is not None:  # the answer is in: the caller takes its page credit
            await gate()
        stream = self.source.records()
        if shard.position is not None:  # after the last committed event (ts, id) DESC
            after = (shard.position.ts_ms, shard.position.id)
            start = next((i for i, ev in enumerate(stream) if _key(ev) < after), len(stream))
        elif shard.upper_ts is not None:
            top = shard.upper_ts
            start = next((i for i, ev in enumerate(stream) if ev.timestamp <= top), len(stream))
        else:
            start = 0
        events = stream[start : start + limit]
        more = start + limit < len(stream)
        last = Position(*_key(events[-1])) if events else None
        return Page(events, more, "next" if more else None, len(stream), last)


_STREAM = events_stream(required=("id", "type", "timestamp"))


class FakeSource:
    """Events newest first through ``lanes`` fetchers; ``add`` makes newer ones appear."""

    def __init__(self, events: list[RawEvent], *, lanes: int = 1, concurrency: int = 2) -> None:
        self._events = sorted(events, key=_key, reverse=True)
        self._lanes = [FakeLane(self, f"lane{i}", concurrency) for i in range(lanes)]
        self.started = False

    def add(self, events: list[RawEvent]) -> None:
        self._events = sorted(self._events + events, key=_key, reverse=True)

    def records(self) -> list[RawEvent]:
        return self._events

    async def start(self) -> str:
        self.started = True
        return f"fetching through {self.strategy_used}"

    @property
    def stream(self) -> Stream:
        return _STREAM

    @property
    def strategy_used(self) -> str:
        return "+".join(lane.name for lane in self._lanes)

    async def head(self) -> tuple[Position | None, int | None]:
        if not self._events:
            return None, 0
        return Position(*_key(self._events[0])), len(self._events)

    async def contains(self, anchor: Position) -> bool:
        return any(_key(ev) == (anchor.ts_ms, anchor.id) for ev in self._events)

    def lanes(self) -> list[Lane]:
        return list(self._lanes)

    def lane(self, index: int = 0) -> FakeLane:
        return self._lanes[index]


@dataclass
class RunRecord:
    strategy: str
    status: RunStatus = "running"
    error: str | None = None
    counters: RunCounters = field(default_factory=RunCounters)


class MemoryStore:
    """The sync's state in memory: the lock, the runs, the shards (copies, like rows)."""

    def __init__(self) -> None:
        self.locked = False
        self.runs: list[RunRecord] = []
        self.shards: dict[str, ShardState] = {}
        self.retired: list[ShardState] = []  # reset shards: their events still count
        self.identity: SourceIdentity | None = None
        self.quarantined: set[str] = set()
        self.heartbeats = 0

    async def try_lock(self) -> None:
        self.locked = True

    @contextlib.asynccontextmanager
    async def planning(self) -> AsyncIterator[None]:
        yield  # one process: nobody to plan against

    async def start_run(self, strategy: str) -> int:
        self.runs.append(RunRecord(strategy))
        return len(self.runs)

    async def finish_run(
        self, status: FinalStatus, counters: RunCounters, error: str | None = None
    ) -> None:
        run = self.runs[-1]
        run.status, run.error, run.counters = status, error, copy.deepcopy(counters)

    async def load_shards(self) -> list[ShardState]:
        return [copy.copy(s) for s in self.shards.values()]

    async def add_shards(self, shards: list[ShardState]) -> None:
        for s in shards:
            self.shards.setdefault(s.shard_id, copy.copy(s))

    async def repair_targets(self) -> list[int]:
        return []  # this destination never holds an incomplete event

    async def tally(self) -> Tally:
        events = sum(s.events for s in [*self.shards.values(), *self.retired])
        return Tally(events=events, quarantined=len(self.quarantined))

    async def load_identity(self) -> SourceIdentity | None:
        return self.identity

    async def save_identity(self, identity: SourceIdentity) -> None:
        self.identity = identity

    async def reset_progress(self) -> int:
        retired = list(self.shards.values())
        self.retired.extend(retired)
        self.shards.clear()
        self.identity = None
        return len(retired)

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        row = self.shards.get(shard.shard_id)
        if row is None or row.status == "done":
            return False
        row.lower_ts = new.upper_ts
        self.shards[new.shard_id] = copy.copy(new)
        return True

    async def heartbeat(self, counters: RunCounters) -> None:
        self.heartbeats += 1

    def commit(self, cp: Checkpoint, inserted: int) -> None:
        """What a destination calls in its write: the checkpoint moves with the rows."""
        row = self.shards[cp.shard_id]
        if cp.position is not None:
            row.position = cp.position
        row.cursor = cp.cursor
        row.status = "done" if cp.done else "running"
        row.events += inserted
        row.pages += cp.pages


class MemoryTable:
    """A destination keyed by event id: a re-read id is a duplicate, never a second row."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.rows: dict[str, Record] = {}
        self.batches = 0

    async def write(self, batch: Batch) -> WriteResult:
        inserted = 0
        for record in batch.records:
            if record[0] not in self.rows:
                self.rows[record[0]] = record
                inserted += 1
        self.store.commit(batch.checkpoint, inserted)
        self.store.quarantined.update(q.payload for q in batch.quarantined)
        self.batches += 1
        return WriteResult(
            inserted=inserted,
            duplicates=len(batch.records) - inserted,
            quarantined=len(batch.quarantined),
            loaded_by="copy" if inserted == len(batch.records) else "upsert",
        )
