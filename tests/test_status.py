"""`etl status` / `etl health` / `etl runs` readers against real tables written by PostgresSink."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from etl.cli.health import api_check, run_checks
from etl.delivery import DeliveryLog
from etl.errors import SinkError
from etl.models import Batch, Checkpoint, Position, Quarantined, Record, RunCounters, ShardState
from etl.read.runs import read_runs
from etl.read.status import read_status
from etl.read.views import snapshot_to_json
from etl.sink import PostgresSink
from etl.source.datasync import EVENTS

T0 = dt.datetime(2026, 1, 27, 19, 0, 0, tzinfo=dt.UTC)


def record(i: int) -> Record:
    ts = T0 - dt.timedelta(seconds=i)
    return (
        str(uuid.UUID(int=i + 1)),
        None,
        None,
        "page_view",
        None,
        ts,
        json.dumps({"n": i}),
        None,
        str(int(ts.timestamp() * 1000)),
    )


def batch(shard: str, ids: range, *, done: bool = False, bad: int = 0) -> Batch:
    records = [record(i) for i in ids]
    last = records[-1]
    quarantined = [Quarantined("unparseable timestamp", f'{{"n": {n}}}') for n in range(bad)]
    return Batch(
        records=records,
        quarantined=quarantined,
        checkpoint=Checkpoint(
            shard, Position(int(last[5].timestamp() * 1000), last[0]), "c", done, pages=1
        ),
        received=len(records) + bad,
    )


def counters(**values: int) -> RunCounters:
    expected = values.pop("expected_total", 0)
    c = RunCounters(**values)
    c.extra.update(expected_total=expected, loaded_before=0)
    return c


@pytest.fixture
async def live_run(sink: PostgresSink) -> PostgresSink:
    """Three shards (a: running, b: done, c: pending), a running run, 8 events loaded of 20."""
    await sink.add_shards([ShardState("a", None, None), ShardState("b", None, None)])
    await sink.add_shards([ShardState("c", None, None)])
    await sink.start_run("events")
    await sink.write(batch("a", range(5), bad=1))
    await sink.write(batch("b", range(100, 103), done=True))
    await sink.heartbeat(
        counters(inserted=8, requests=4, retries=1, rate_limited=2, cursor_resets=1,
                 quarantined=1, expected_total=20)
    )  # fmt: skip
    return sink


async def test_fresh_database_is_not_initialized(db_url: str) -> None:
    """A database no ingest has touched reads as 'not initialized', not as an error."""
    snapshot = await read_status(db_url)
    assert not snapshot.initialized
    doc = snapshot_to_json(snapshot)
    assert doc["schema"] == 1 and doc["initialized"] is False
    assert doc["events"]["loaded"] == 0 and doc["run"] is None
    assert await read_runs(db_url) == []


async def test_migrated_database_without_runs(sink: PostgresSink, db_url: str) -> None:
    """Tables but no run: zero loaded, no run, unknown total."""
    snapshot = await read_status(db_url)
    assert snapshot.initialized and snapshot.run is None
    assert (snapshot.loaded, snapshot.expected_total, snapshot.percent) == (0, None, None)


async def test_live_run_figures(live_run: PostgresSink, db_url: str) -> None:
    """While a run is live, status shows the progress rows' sums and the run's counters."""
    snapshot = await read_status(db_url)
    assert snapshot.loaded == 8 and snapshot.quarantined == 1
    assert snapshot.expected_total == 20 and snapshot.percent == 40.0
    run = snapshot.run
    assert run is not None and run.status == "running" and run.run_id == live_run.run_id
    assert (run.requests, run.retries, run.rate_limited, run.cursor_resets) == (4, 1, 2, 1)
    assert snapshot.rate_now_per_s is not None and snapshot.rate_now_per_s > 0
    assert snapshot.eta_s is not None and snapshot.eta_s > 0
    by_id = {s.shard_id: s for s in snapshot.shards}
    assert [(s.status, s.events) for s in snapshot.shards] == [
        ("running", 5),
        ("done", 3),
        ("pending", 0),
    ]
    assert by_id["a"].position == T0 - dt.timedelta(seconds=4)
    assert by_id["c"].position is None and by_id["c"].heartbeat_at is None


async def test_json_schema(live_run: PostgresSink, db_url: str) -> None:
    """The JSON document has the documented keys and figures."""
    doc = snapshot_to_json(await read_status(db_url))
    json.dumps(doc)  # serialisable as is
    assert set(doc) == {
        "schema",
        "initialized",
        "taken_at",
        "events",
        "rate",
        "shards",
        "run",
        "last_load",
        "streams",  # added by `etl sync` (issue 13); [] when no declarative source ran
        "budgets",  # rate budgets shared by tasks (issue 17); [] when none was used
    }
    assert doc["streams"] == [] and doc["budgets"] == []
    assert doc["events"] == {
        "loaded": 8,
        "expected": 20,
        "percent": 40.0,
        "duplicates": 0,
        "quarantined": 1,
        "posted": 0,  # recorded by `etl serve`'s POST /events (none here)
    }
    assert set(doc["rate"]) == {"now_per_s", "average_per_s", "eta_s"}
    assert {k: doc["shards"][k] for k in ("total", "done", "running", "pending")} == {
        "total": 3,
        "done": 1,
        "running": 1,
        "pending": 1,
    }
    assert doc["shards"]["items"][0]["id"] == "a"
    assert doc["shards"]["items"][0]["position"] == "2026-01-27T18:59:56+00:00"
    run = doc["run"]
    assert run["status"] == "running" and run["inserted"] == 8 and run["rate_limited"] == 2
    assert run["heartbeat_age_s"] >= 0


async def test_duplicates_are_counted(live_run: PostgresSink, db_url: str) -> None:
    """Re-delivered events add to duplicates, not to loaded."""
    await live_run.write(batch("a", range(5)))
    snapshot = await read_status(db_url)
    assert (snapshot.loaded, snapshot.duplicates) == (8, 5)


async def test_finished_run_has_no_eta(live_run: PostgresSink, db_url: str) -> None:
    """After the run ends: its final status, no current rate and no ETA."""
    await live_run.finish_run("succeeded", counters(inserted=8, expected_total=20))
    snapshot = await read_status(db_url)
    assert snapshot.run is not None and snapshot.run.status == "succeeded"
    assert snapshot.run.ended_at is not None
    assert snapshot.rate_now_per_s is None and snapshot.eta_s is None
    assert snapshot.rate_avg_per_s is not None


async def test_running_run_is_preferred_and_runs_listed_newest_first(
    live_run: PostgresSink, db_url: str
) -> None:
    """Status shows the running run even when an older one failed; runs lists newest first."""
    first = live_run.run_id
    await live_run.finish_run("failed", counters(inserted=8), "boom")
    async with PostgresSink(db_url, stream=EVENTS) as second:
        await second.start_run("feed")
        snapshot = await read_status(db_url)
        assert snapshot.run is not None and snapshot.run.run_id == second.run_id
        history = await read_runs(db_url, limit=5)
        assert [r.run_id for r in history] == [second.run_id, first]
        assert history[1].status == "failed" and history[1].error == "boom"
        assert [r.run_id for r in await read_runs(db_url, limit=1)] == [second.run_id]


async def test_read_status_on_a_connection(live_run: PostgresSink, db_url: str) -> None:
    """An open asyncpg connection works as well as a DSN."""
    conn = await asyncpg.connect(db_url)
    try:
        assert (await read_status(conn)).loaded == 8
    finally:
        await conn.close()


async def test_unreachable_database_error_hides_password() -> None:
    """Connection failures become SinkError, with the password masked."""
    with pytest.raises(SinkError) as info:
        await read_status("postgresql://etl:s3cr3t-pw@127.0.0.1:1/etl")
    assert "s3cr3t-pw" not in str(info.value)
    assert "etl:***@127.0.0.1:1" in str(info.value)


async def test_health_run_checks(live_run: PostgresSink, db_url: str) -> None:
    """A fresh heartbeat is healthy; past the stale limit the run is 'stalled'; failed is named."""
    snapshot = await read_status(db_url)
    assert all(c.ok for c in run_checks(snapshot, stale_after_s=60))
    stalled = [c for c in run_checks(snapshot, stale_after_s=0) if not c.ok]
    assert [c.detail.split(" (")[0] for c in stalled] == [f"run {live_run.run_id} stalled"]
    await live_run.finish_run("failed", counters(), "SinkError: disk full")
    failed = [c for c in run_checks(await read_status(db_url), stale_after_s=60) if not c.ok]
    assert [c.detail for c in failed] == [f"run {live_run.run_id} failed: SinkError: disk full"]


async def test_health_with_no_run_is_ok(db_url: str) -> None:
    """Nothing has failed on a database where no ingest ran."""
    assert all(c.ok for c in run_checks(await read_status(db_url), stale_after_s=60))


async def test_api_check(sandbox) -> None:  # type: ignore[no-untyped-def]
    """The API check accepts the sandbox's key, names a rejected key, and skips when unset."""
    sb = await sandbox(events=100)
    assert (await api_check(sb.base_url, sb.api_key)).ok
    rejected = await api_check(sb.base_url, "ds_wrong_key_000")
    assert (rejected.ok, rejected.detail) == (False, "api key rejected")
    skipped = await api_check(None, "")
    assert (skipped.ok, skipped.detail) == (True, "not configured (sandbox)")
    down = await api_check("http://127.0.0.1:1/api/v1", "k-123")
    assert not down.ok and down.detail.startswith("api unreachable")


async def test_delivery_log_as_the_sink_hook(db_url: str, tmp_path: Path) -> None:
    """PostgresSink's on_delivery hook writes the same figures as its delivery_log table."""
    path = tmp_path / "delivery.jsonl"
    with DeliveryLog(path) as hook:
        async with PostgresSink(db_url, stream=EVENTS, on_delivery=hook) as sink:
            await sink.add_shards([ShardState("a", None, None)])
            await sink.start_run("events")
            await sink.write(batch("a", range(5), bad=1))
            await sink.write(batch("a", range(5)))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["rows_received"], d["rows_written"], d["duplicates"]) for d in lines] == [
        (6, 5, 0),
        (5, 0, 5),
    ]
    assert lines[0]["provider"] == "datasync" and lines[0]["success"] is True
    assert lines[0]["run_id"] == sink.run_id and lines[0]["quarantined"] == 1
