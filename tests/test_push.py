"""`etl push` end to end: real PostgreSQL, the real sandbox's Databox surface, virtual time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from etl.cli.compose import ingest_main
from etl.clock import FakeClock
from etl.errors import DestinationAuthError, DestinationError
from etl.sandbox.clock import SystemClock
from etl.sandbox.databox.config import DATABOX_DEMO_KEY, DataboxConfig
from etl.settings import PushSettings, Settings
from tests.fixtures_sandbox import SandboxFactory, SandboxHandle
from tests.ingest_harness import LinkedClock, Recorder
from tests.push_harness import load, make_records, push, query, remote


async def start(sandbox: SandboxFactory, clock: FakeClock, **databox: Any) -> SandboxHandle:
    return await sandbox(events=10, clock=LinkedClock(clock), databox=DataboxConfig(**databox))


def ids_of(records: list[Any]) -> list[str]:
    return sorted(r[0] for r in records)


async def test_a_new_dataset_is_owed_every_loaded_event_and_gets_each_once(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Declaring `events` backfills what is loaded; the push creates the dataset with its
    primary key, sends chunks of at most 100, verifies each ingestion, empties the outbox."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    records = make_records(1_050)
    await load(db_url, records)
    run = await push(db_url, sb, clock, ("events",))
    stored = remote(sb, "etl events")
    assert sorted(r["id"] for r in stored) == ids_of(records)
    assert run.counters.chunks == 11 and run.counters.records == 1_050
    assert run.counters.verified == 11 and run.counters.appended == 1_050
    assert (run.counters.overwritten, run.counters.rejected) == (0, 0)
    ds = next(iter(sb.state.databox.store.datasets.values()))
    assert ds.primary_keys == ("id",) and ds.received_total == 1_050
    assert await query(db_url, "SELECT * FROM push_outbox") == []
    sample = next(r for r in stored if r["id"] == records[0][0])
    assert sample == {
        "id": records[0][0],
        "occurred_at": "2026-01-27T10:00:00.000Z",
        "type": "page_view",
        "name": "event 0",
        "user_id": records[0][2],
        "session_id": records[0][1],
        "page": "/p/0",
        "device_type": "mobile",
        "browser": "Firefox",
    }


async def test_loads_after_declaring_owe_only_their_new_events(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Once declared, each load transaction writes its new events to the outbox; a re-read
    batch (duplicates through the staged path) owes nothing again. A second push sends only
    what is new."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    first, second = make_records(300), make_records(250, seed=2)
    await push(db_url, sb, clock, ("events",))  # declares on an empty table
    await load(db_url, first, batch=100)
    await load(db_url, first[:150] + second, batch=100)  # overlaps the loaded rows
    owed = await query(db_url, "SELECT sum(cardinality(event_ids)) AS n FROM push_outbox")
    assert owed[0]["n"] == 550
    run = await push(db_url, sb, clock)
    assert sorted(r["id"] for r in remote(sb, "etl events")) == ids_of(first + second)
    assert run.counters.records == 550 and run.counters.overwritten == 0
    again = await push(db_url, sb, clock)
    assert (again.counters.chunks, again.counters.records) == (0, 0)


async def test_lost_answers_and_5xx_are_retried_into_the_key_never_duplicated(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """With a third of the requests failing (503, or stored and then answered 504), every
    record ends in the dataset exactly once; the retries are overwrites, logged as failures."""
    clock = FakeClock()
    sb = await start(sandbox, clock, p_5xx=0.15, p_lost=0.2, fault_seed=3)
    records = make_records(2_000)
    await load(db_url, records)
    run = await push(db_url, sb, clock, ("events",))
    stored = remote(sb, "etl events")
    assert len(stored) == 2_000 and sorted(r["id"] for r in stored) == ids_of(records)
    ds = next(iter(sb.state.databox.store.datasets.values()))
    assert ds.received_total > 2_000  # the lost answers were stored, then sent again
    assert run.counters.retries > 0 and run.counters.overwritten > 0
    failed = [d for d in run.deliveries if not d.success and d.event == "request"]
    assert {d.http_status for d in failed} == {503, 504}
    assert all(d.error and "Databox" in d.error for d in failed)


async def test_429_pauses_for_retry_after(sandbox: SandboxFactory, db_url: str) -> None:
    """Pushing at 20 requests/s into a 5/s limit: 429s pause every request for Retry-After
    (1 s), the run still ends exact, and its virtual duration shows the limit was obeyed."""
    clock = FakeClock()
    sb = await start(sandbox, clock, rate_limit=5)
    records = make_records(3_000)
    await load(db_url, records)
    t0 = clock.now()
    run = await push(db_url, sb, clock, ("events",), rate_per_s=20.0, burst=1.0)
    assert sorted(r["id"] for r in remote(sb, "etl events")) == ids_of(records)
    assert run.counters.rate_limited > 0
    assert sb.state.databox.statuses[429] == run.counters.rate_limited
    assert clock.now() - t0 >= 30 / 5 - 1  # 30 chunks at <= 5/s


async def test_an_unknown_key_stops_with_the_auth_error(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """401 stops the push at once with DestinationAuthError (exit 14), the key unprinted."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    await load(db_url, make_records(10))
    with pytest.raises(DestinationAuthError) as info:
        await push(db_url, sb, clock, ("events",), key="dbx_wrong_key_123")
    assert info.value.exit_code == 14
    assert "DATABOX_API_KEY" in str(info.value) and "dbx_wrong_key_123" not in str(info.value)
    assert (await query(db_url, "SELECT count(*) AS n FROM push_outbox"))[0]["n"] == 1


async def test_a_server_that_keeps_failing_ends_with_the_destination_error(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Every request 503: after the attempts, exit 15; nothing is marked delivered."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    await load(db_url, make_records(10))
    await push(db_url, sb, clock, ("events",))
    await load(db_url, make_records(10, seed=9), shard="s2")
    sb.state.databox.config = DataboxConfig(p_5xx=1.0)
    with pytest.raises(DestinationError) as info:
        await push(db_url, sb, clock, max_attempts=3)
    assert info.value.exit_code == 15 and "3 attempts" in str(info.value)
    owed = await query(db_url, "SELECT sum(cardinality(event_ids) - sent) AS n FROM push_outbox")
    assert owed[0]["n"] == 10


async def test_rejected_records_are_kept_with_the_apis_reason(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Records the API rejects (a column typed otherwise at the destination) are stored in
    push_rejects with their key, code, field and message; the delivery rows carry the counts."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    records = make_records(120)
    await push(db_url, sb, clock, ("events",))  # creates the dataset
    ds = next(iter(sb.state.databox.store.datasets.values()))
    ds.columns["page"] = "number"  # someone else's pushes typed the column
    await load(db_url, records)
    run = await push(db_url, sb, clock)
    assert run.counters.rejected == 120 and remote(sb, "etl events") == []
    rows = await query(db_url, "SELECT record_key, code, field, message FROM push_rejects")
    assert sorted(r["record_key"] for r in rows) == ids_of(records)
    assert {(r["code"], r["message"]) for r in rows} == {
        ("TYPE_MISMATCH", "Column 'page' is number, got string")
    }
    assert rows[0]["field"].startswith("records[") and rows[0]["field"].endswith("].page")
    logged = await query(
        db_url, "SELECT sum(rejected) AS r FROM delivery_log WHERE destination = 'databox'"
    )
    assert logged[0]["r"] == 120


async def test_aggregates_push_one_row_per_bucket_with_current_values(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Hourly counts per type and daily conversion: one row per key; after more events land
    in a bucket, the next push overwrites that bucket's row with the new figures."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    first = make_records(800, step_s=30)  # 400 min: 7 hours, 4 types
    await load(db_url, first)
    await push(db_url, sb, clock, ("hourly_event_counts", "conversion_daily"))
    hourly = remote(sb, "etl hourly event counts")
    expected = await query(
        db_url,
        "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"') AS h,"
        " type, count(*) AS n FROM events GROUP BY 1, 2",
    )
    assert sorted((r["hour"], r["event_type"], r["events"]) for r in hourly) == sorted(
        (r["h"], r["type"], r["n"]) for r in expected
    )
    conv = remote(sb, "etl click to purchase conversion per day")
    assert conv == [{"day": "2026-01-27", "clicks": 200, "purchases": 200, "conversion_rate": 1.0}]
    later = first[0][5] + dt.timedelta(seconds=40)  # 40 clicks in a new hour
    more = [(*r[:3], "click", *r[4:]) for r in make_records(40, seed=5, start=later, step_s=1)]
    await load(db_url, more, shard="s2")
    run = await push(db_url, sb, clock)
    conv = remote(sb, "etl click to purchase conversion per day")
    assert conv == [
        {"day": "2026-01-27", "clicks": 240, "purchases": 200, "conversion_rate": 0.8333}
    ]
    hourly = remote(sb, "etl hourly event counts")
    assert len({(r["hour"], r["event_type"]) for r in hourly}) == len(hourly)
    newest = [
        r for r in hourly if r["hour"] == "2026-01-27T10:00:00Z" and r["event_type"] == "click"
    ]
    assert newest[0]["events"] == 40
    assert run.counters.overwritten > 0


async def test_the_delivery_log_holds_every_request_and_never_the_key(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Each request is a delivery row (destination, dataset, rows, columns, attempt, status,
    request and ingestion ids, counts once verified); the JSON lines never hold the key."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    await load(db_url, make_records(250))
    run = await push(db_url, sb, clock, ("events",))
    rows = await query(
        db_url,
        "SELECT * FROM delivery_log WHERE destination = 'databox' ORDER BY id",
    )
    assert [r["rows_received"] for r in rows] == [100, 100, 50]
    for r in rows:
        assert r["success"] and r["attempt"] == 1 and r["http_status"] == 200
        assert r["request_id"] and r["ingestion_id"]
        assert r["accepted"] == r["rows_received"] and r["rejected"] == 0
        assert r["columns"][0] == "id" and r["dataset"] == "events"
    lines = [d.to_json() for d in run.deliveries]
    assert len(lines) == 6  # 3 requests, 3 verifications
    assert all(sb.api_key not in line and "dbx_sandbox" not in line for line in lines)


async def test_ingest_with_push_drains_as_it_loads(
    sandbox: SandboxFactory, db_url: str, tmp_path: Path
) -> None:
    """`etl ingest --push`: the pusher follows the load and, once the load ends, drains the
    rest: the Databox dataset holds every event the DataSync API served, once each, and the
    daily aggregate adds up to the same total."""
    sb = await sandbox(events=3_000, clock=SystemClock(), unlimited=True)  # type: ignore[arg-type]
    settings = Settings(
        api_url=sb.base_url, api_key=sb.api_key, database_url=db_url, data_dir=tmp_path
    )
    push_to = PushSettings(datasets=("events", "daily_active_users")).bundled(
        sb.root_url + "/databox", DATABOX_DEMO_KEY
    )
    outcome, _ = await ingest_main(settings, Recorder(), push_to)
    assert outcome.status == "succeeded"
    assert sorted(r["id"] for r in remote(sb, "etl events")) == sorted(sb.ids())
    daily = remote(sb, "etl daily active users")
    assert sum(r["events"] for r in daily) == 3_000
    lines = (tmp_path / "delivery.jsonl").read_text().splitlines()
    assert any('"destination": "databox"' in line for line in lines)


async def test_ingestions_are_verified_while_the_push_goes_on(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """Every `verify_every` chunks a verification round runs (one list request for them),
    so a long push reports its counts as it goes, not only at the end."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    await load(db_url, make_records(1_000))
    run = await push(db_url, sb, clock, ("events",), verify_every=3)
    events = [d.event for d in run.deliveries]
    assert events.index("verified") < len(events) - 1 - events[::-1].index("request")
    assert events.count("verified") == 10 and run.counters.verified == 10
    listed = sb.state.databox.requests_by_route["GET /v1/datasets/{id}/ingestions"]
    assert 3 <= listed <= 5  # a round per 3 chunks (and the last), one request each


async def test_rows_refreshed_in_place_are_pushed_again(
    sandbox: SandboxFactory, db_url: str
) -> None:
    """A re-sync that replaces loaded rows with the source's changed copy (Batch.overwrite)
    owes them again: the dataset ends with the new content, still one row per id."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    records = make_records(200)
    await load(db_url, records)
    await push(db_url, sb, clock, ("events",))
    renamed = [(*r[:4], f"renamed {i}", *r[5:]) for i, r in enumerate(records)]
    await load(db_url, renamed[:50], overwrite=True)
    run = await push(db_url, sb, clock)
    stored = {r["id"]: r["name"] for r in remote(sb, "etl events")}
    assert len(stored) == 200 and run.counters.overwritten == 50
    assert sorted(n for n in stored.values() if n.startswith("renamed")) == sorted(
        f"renamed {i}" for i in range(50)
    )
