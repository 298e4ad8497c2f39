"""The sync state belongs to one dataset: a different one stops the run, --full-refresh
re-syncs, and a run that ends short of the source's stated total is never a success.

Real sandbox over loopback, real PostgreSQL, virtual time (``tests.ingest_harness``).
"""

from __future__ import annotations

from typing import Any

import pytest

from etl.clock import FakeClock
from etl.errors import ExitCode, SourceMismatch
from etl.identity import SourceIdentity, api_label, key_id
from etl.models import RunCounters
from etl.pipeline import PipelineOptions
from etl.read.rollups import verify as verify_rollups
from etl.wiring import run_ingest
from tests.fakes import T0_MS, FakeSource, MemoryStore, MemoryTable, make_events
from tests.ingest_harness import LinkedClock, Recorder, ingest, loaded_ids, query
from tests.test_cli_ingest import env_for, run_etl

SMALL, FULL = 3_000, 12_000
KEYS = ("ds_key_one_1111111111111111111111", "ds_key_two_2222222222222222222222")


async def start(sandbox: Any, clock: FakeClock, events: int, **knobs: Any) -> Any:
    return await sandbox(
        events=events, clock=LinkedClock(clock), api_keys=KEYS, rate_limit=10_000, **knobs
    )


async def run(sb: Any, db_url: str, clock: FakeClock, key: str = KEYS[0], **pipeline: Any) -> Any:
    reporter = Recorder()
    outcome = await ingest(
        sb.base_url, key, db_url, clock, pipeline={"shards": 4, **pipeline}, reporter=reporter
    )
    return outcome, reporter.messages


async def stored_identity(db_url: str) -> dict[str, Any]:
    import json

    rows = await query(db_url, "SELECT identity FROM ingest_source")
    assert len(rows) == 1
    doc: dict[str, Any] = json.loads(rows[0]["identity"])
    return doc


@pytest.mark.parametrize(("first", "second"), [(SMALL, FULL), (FULL, SMALL)])
async def test_a_different_dataset_stops_before_fetching_anything(
    sandbox: Any, db_url: str, first: int, second: int
) -> None:
    """The issue's scenario: a small dataset, then a different one into the same database.
    The second run stops with its own exit code and a message naming both ways out, and
    loads nothing (it must not end as "up to date")."""
    clock = FakeClock()
    a = await start(sandbox, clock, first)
    outcome, _ = await run(a, db_url, clock)
    assert outcome.status == "succeeded"
    b = await start(sandbox, clock, second)
    with pytest.raises(SourceMismatch) as caught:
        await run(b, db_url, clock)
    text = str(caught.value)
    assert caught.value.exit_code == ExitCode.SOURCE_MISMATCH
    assert "different dataset" in text and "oldest event" in text
    assert "etl ingest --full-refresh" in text and "etl reset" in text
    assert len(await loaded_ids(db_url)) == first


async def test_full_refresh_after_a_change_ends_with_the_new_dataset(
    sandbox: Any, db_url: str
) -> None:
    """--full-refresh retires the old state and re-reads the source: the table then holds
    every event of the new dataset, with the new dataset's content where an id is reused
    (the kept row is replaced, not the first copy kept), and the next plain run is a quiet
    incremental one."""
    clock = FakeClock()
    small = await start(sandbox, clock, SMALL)
    await run(small, db_url, clock)
    full = await start(sandbox, clock, FULL)
    outcome, messages = await run(full, db_url, clock, full_refresh=True)
    assert outcome.status == "succeeded", outcome.reason
    assert any("--full-refresh" in m and "retired" in m for m in messages)
    assert set(await loaded_ids(db_url)) == set(full.ids())
    assert outcome.loaded_total == FULL == outcome.expected_total
    # the small dataset's rows whose ids the full one reuses now hold the full one's content
    rows = await query(
        db_url,
        "SELECT id::text AS id, (extract(epoch FROM occurred_at) * 1000)::bigint AS ms FROM events",
    )
    held = {r["id"]: r["ms"] for r in rows}
    assert held == dict(zip(full.ids(), full.dataset.ts, strict=False))
    assert 0 < outcome.counters.extra["refreshed"] <= SMALL
    assert (await verify_rollups(db_url)).ok  # the replaced rows moved their rollup counts
    again, _ = await run(full, db_url, clock)
    assert again.status == "succeeded" and "up to date" in again.planned


async def test_the_same_data_at_a_new_url_with_a_new_key_is_the_same_dataset(
    sandbox: Any, db_url: str
) -> None:
    """A proxy in front of the API or a rotated key is no reason to stop: the anchor events
    are there, so the run goes on and says what changed. Only a hash prefix of the key is
    kept, never the key."""
    clock = FakeClock()
    first = await start(sandbox, clock, SMALL)
    await run(first, db_url, clock, key=KEYS[0])
    stored = await stored_identity(db_url)
    assert stored["key_id"] == key_id(KEYS[0]) and KEYS[0] not in str(stored)
    assert stored["oldest"] is not None and stored["total"] == SMALL
    moved = await start(sandbox, clock, SMALL)  # same data, another port
    outcome, messages = await run(moved, db_url, clock, key=KEYS[1])
    assert outcome.status == "succeeded"
    assert any("API changed" in m and "same dataset" in m for m in messages)
    assert any("API key (id) changed" in m for m in messages)
    now = await stored_identity(db_url)
    assert now["api"] == api_label(moved.base_url) and now["key_id"] == key_id(KEYS[1])
    assert now["oldest"] == stored["oldest"]


async def test_state_without_an_identity_that_ends_short_is_incomplete(
    sandbox: Any, db_url: str
) -> None:
    """State written before identities were kept cannot be checked: the run goes on, but
    ending with fewer events than the source states is reported as incomplete (status,
    reason, runs row), never as a success; --full-refresh then completes it."""
    clock = FakeClock()
    await run(await start(sandbox, clock, SMALL), db_url, clock)
    await query(db_url, "DELETE FROM ingest_source")  # as a database from an older etl
    full = await start(sandbox, clock, FULL)
    outcome, _ = await run(full, db_url, clock)
    assert outcome.status == "incomplete"
    assert f"{SMALL:,} of the {FULL:,} events" in outcome.reason
    assert "etl ingest --full-refresh" in outcome.reason
    rows = await query(db_url, "SELECT status, error FROM ingest_runs ORDER BY run_id DESC")
    assert rows[0]["status"] == "incomplete" and "missing" in rows[0]["error"]
    fixed, _ = await run(full, db_url, clock, full_refresh=True)
    assert fixed.status == "succeeded"
    assert set(await loaded_ids(db_url)) == set(full.ids())


async def test_quarantined_events_count_towards_the_stated_total(sandbox: Any, db_url: str) -> None:
    """Events that could not be made valid are accounted for: a run that loaded every valid
    event and quarantined the rest is complete, and its counters add up."""
    clock = FakeClock()
    sb = await start(sandbox, clock, SMALL, invalid_events=0.02)
    outcome, _ = await run(sb, db_url, clock)
    c = outcome.counters
    assert outcome.status == "succeeded", outcome.reason
    assert c.quarantined > 0
    assert c.received == c.inserted + c.duplicates + c.quarantined + c.out_of_range


async def test_a_source_that_lost_events_is_a_different_dataset() -> None:
    """In-memory parts: newer events at the head are an ordinary incremental run; a source
    that then states fewer events than at the last finished sync stops the run, and so does
    one whose oldest event is gone."""
    events = make_events(1_000)
    source, store = FakeSource(events), MemoryStore()
    table = MemoryTable(store)
    me = SourceIdentity("http://api.example/api/v1", key_id("k"))
    assert (await fake_run(source, table, store, me)).status == "succeeded"
    source.add(make_events(50, newest_ms=T0_MS + 100_000))
    assert (await fake_run(source, table, store, me)).status == "succeeded"
    shrunk = FakeSource(events[:-1] + make_events(40, newest_ms=T0_MS + 100_000))
    with pytest.raises(SourceMismatch) as caught:
        await fake_run(shrunk, table, store, me)
    assert "oldest event" in str(caught.value) and "fewer than the 1,050" in str(caught.value)


async def fake_run(
    source: FakeSource, table: MemoryTable, store: MemoryStore, me: SourceIdentity
) -> Any:
    options = PipelineOptions(page_size=100, shards=4, span_ms=3_600_000, tick_s=1.0)
    return await run_ingest(
        source,
        table,
        store,
        Recorder(),
        FakeClock(),
        options,
        counters=RunCounters(),
        identity=me,
    )


async def test_after_etl_reset_a_plain_run_resyncs_with_the_new_content(
    sandbox: Any, db_url: str
) -> None:
    """`etl reset --yes` (rows kept), then a plain `etl ingest` against the changed source:
    no "different dataset" stop (the state was forgotten on purpose), and the table ends
    with the new dataset's events and content."""
    clock = FakeClock()
    await run(await start(sandbox, clock, SMALL), db_url, clock)
    code, output = await run_etl("reset", "--yes", "--database-url", db_url, env=env_for())
    assert code == 0, output
    full = await start(sandbox, clock, FULL)
    outcome, messages = await run(full, db_url, clock)
    assert outcome.status == "succeeded" and "full sync" in outcome.planned
    assert any("re-syncing over rows kept" in m for m in messages)
    rows = await query(
        db_url,
        "SELECT id::text AS id, (extract(epoch FROM occurred_at) * 1000)::bigint AS ms FROM events",
    )
    assert {r["id"]: r["ms"] for r in rows} == dict(zip(full.ids(), full.dataset.ts, strict=False))
