"""The real pipeline and its one wiring (etl.wiring.run_ingest) against in-memory parts.

No PostgreSQL, no HTTP: what is pinned here is the engine's own promise, whatever the source
and destination: every event once, the run recorded from start to end, resumable state.
"""

from __future__ import annotations

import pytest

from etl.clock import FakeClock
from etl.errors import PermanentSourceError
from etl.models import Batch, Destination, RunCounters, Source, StateStore, WriteResult
from etl.pipeline import Outcome, PipelineOptions
from etl.wiring import run_ingest
from tests.fakes import T0_MS, FakeSource, MemoryStore, MemoryTable, make_events
from tests.ingest_harness import Recorder

OPTIONS = PipelineOptions(page_size=100, shards=4, span_ms=3_600_000, loaders=2, tick_s=1.0)


async def ingest(
    source: Source, table: Destination, store: StateStore, **options: object
) -> Outcome:
    opts = PipelineOptions(**{**_fields(OPTIONS), **options})  # type: ignore[arg-type]
    return await run_ingest(
        source, table, store, Recorder(), FakeClock(), opts, counters=RunCounters()
    )


def _fields(options: PipelineOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


async def test_every_event_of_a_fake_source_lands_once_in_a_fake_destination() -> None:
    """2,500 events across 4 shards and 2 loaders: each id once, every shard done, the run
    recorded as succeeded with its strategy and counters."""
    events = make_events(2_500)
    source, store = FakeSource(events, lanes=2), MemoryStore()
    table = MemoryTable(store)
    outcome = await ingest(source, table, store)
    assert outcome.status == "succeeded"
    assert set(table.rows) == {ev.id for ev in events}
    assert all(s.status == "done" for s in store.shards.values())
    assert sum(s.events for s in store.shards.values()) == 2_500
    run = store.runs[-1]
    assert (run.strategy, run.status, run.error) == ("lane0+lane1", "succeeded", None)
    assert run.counters.inserted == 2_500 and outcome.loaded_total == 2_500


async def test_the_next_run_loads_only_what_is_new() -> None:
    """After a full sync, a second run plans only the time above it: newer events land,
    nothing old is fetched again beyond the overlap."""
    source, store = FakeSource(make_events(1_000)), MemoryStore()
    table = MemoryTable(store)
    await ingest(source, table, store)
    newer = make_events(150, newest_ms=T0_MS + 600_000, step_ms=3_000)
    source.add(newer)
    requests_before = source.lane().requests
    outcome = await ingest(source, table, store)
    assert outcome.status == "succeeded"
    assert len(table.rows) == 1_150
    assert outcome.counters.inserted == 150
    assert source.lane().requests - requests_before <= 6  # not the 10+ pages of a full sync
    assert [r.status for r in store.runs] == ["succeeded", "succeeded"]


async def test_a_source_failure_ends_the_run_failed_and_resumable() -> None:
    """A lane that fails for good stops the run: recorded as failed with the reason, the
    shards left unfinished for the next run, which then completes the set."""
    events = make_events(600)
    source, store = FakeSource(events), MemoryStore()
    table = MemoryTable(store)
    source.lane().fail = PermanentSourceError("HTTP 404 from the API")
    outcome = await ingest(source, table, store)
    assert outcome.status == "failed" and outcome.error is not None
    assert store.runs[-1].status == "failed"
    assert "HTTP 404" in (store.runs[-1].error or "")
    assert any(s.status != "done" for s in store.shards.values())
    source.lane().fail = None
    assert (await ingest(source, table, store)).status == "succeeded"
    assert set(table.rows) == {ev.id for ev in events}


@pytest.mark.parametrize("max_pages", [1, 3])
async def test_few_page_credits_still_load_everything(max_pages: int) -> None:
    """However few pages may be held between fetch and commit, the set is exact."""
    events = make_events(800)
    source, store = FakeSource(events, concurrency=4), MemoryStore()
    table = MemoryTable(store)
    outcome = await ingest(source, table, store, max_pages=max_pages)
    assert outcome.status == "succeeded" and set(table.rows) == {ev.id for ev in events}


async def test_responses_waiting_for_a_page_credit_stop_new_requests() -> None:
    """With loaders far behind (each write takes a virtual second) and few page credits,
    answered responses wait for a credit (each keeps its connection's buffers); once half
    the credits' worth wait, no new request goes out until the loaders catch up: fewer
    wait at once than there are shards to fetch, and the set is still exact."""
    events = make_events(3_000)
    clock = FakeClock()
    source, store = FakeSource(events, concurrency=16), MemoryStore()

    class SlowTable(MemoryTable):
        async def write(self, batch: Batch) -> WriteResult:
            await clock.sleep(1.0)
            return await super().write(batch)

    table = SlowTable(store)
    # 16 shards, none split (splits would add shards, and requests, to the count)
    opts = PipelineOptions(**{**_fields(OPTIONS), "max_pages": 4, "shards": 16, "split": False})  # type: ignore[arg-type]
    outcome = await run_ingest(
        source, table, store, Recorder(), clock, opts, counters=RunCounters()
    )
    assert outcome.status == "succeeded" and set(table.rows) == {ev.id for ev in events}
    assert 1 <= outcome.counters.extra["peak_awaiting_credit"] < 16
