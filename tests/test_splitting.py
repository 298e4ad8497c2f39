"""The run's tail: shards split so that their last pages go in flight together, on virtual
time against an in-memory source whose pages take a second each (no test sleeps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import fields

from etl.clock import FakeClock
from etl.models import Page, RunCounters, ShardState
from etl.pipeline import PipelineOptions
from etl.wiring import run_ingest
from tests.fakes import FakeLane, FakeSource, MemoryStore, MemoryTable, make_events
from tests.ingest_harness import Recorder


class SlowLane(FakeLane):
    """Every page takes ``latency_s`` of virtual time on the server."""

    def __init__(self, source: FakeSource, clock: FakeClock, latency_s: float) -> None:
        super().__init__(source, "slow", concurrency=64)
        self.clock = clock
        self.latency_s = latency_s

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Callable[[], Awaitable[None]] | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        await self.clock.sleep(self.latency_s)
        return await super().fetch(shard, limit, gate=gate, ticket=ticket)


async def _run(events: int, **options: object) -> tuple[float, int, RunCounters]:
    """(virtual seconds the run took, requests, the run's counters)"""
    clock = FakeClock()
    source, store = FakeSource(make_events(events)), MemoryStore()
    lane = SlowLane(source, clock, 1.0)
    source._lanes = [lane]
    table = MemoryTable(store)
    base = {f.name: getattr(PipelineOptions(), f.name) for f in fields(PipelineOptions)}
    span = events * 997 + 1_000  # make_events: one event every 997 ms; the open tail empty
    shape = {"page_size": 5_000, "shards": 4, "span_ms": span, "tick_s": 1.0}
    opts = PipelineOptions(**{**base, **shape, **options})  # type: ignore[arg-type]
    outcome = await run_ingest(
        source, table, store, Recorder(), clock, opts, counters=RunCounters()
    )
    assert outcome.status == "succeeded" and len(table.rows) == events
    return clock.now(), lane.requests, outcome.counters


async def test_the_last_pages_go_in_flight_together_not_one_after_another() -> None:
    """100,000 events in pages of 5,000 (20 pages), 4 planned shards, pages of 1 s and room
    for 24 in flight: the shards are split as pages land (a shard split off counts by the
    density it was cut at, before its first page; a shard of 1.25 pages is worth a split;
    a fetcher that takes a shard while others wait cuts one for them), so every page left
    goes out at once: 2 round trips, where splitting only what had been read took 4. The
    cuts are page-aligned: no request more than the pages' own count, plus two."""
    took, requests, counters = await _run(100_000, max_in_flight=24)
    assert took <= 2.0
    assert requests <= 20 + 2
    assert counters.extra["splits"] >= 10
