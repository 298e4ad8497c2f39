"""Rollups kept by the load transaction: exact after loads, re-reads and deletes; verified."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from etl.cli import app
from etl.errors import ExitCode
from etl.read.db import run_query
from etl.read.rollups import read_summary, verify
from etl.sink.purge import PurgeFilter, purge
from tests.fixtures_db import run_sync
from tests.read_data import T0, USERS, event, execute, fetch, load, mixed


async def hourly(dsn: str) -> dict[tuple[dt.datetime, str], int]:
    rows = await fetch(dsn, "SELECT hour, type, events FROM rollup_hourly")
    return {(r["hour"], r["type"]): r["events"] for r in rows}


async def test_direct_copy_counts_every_row(db_url: str) -> None:
    """A COPY straight into events adds each of its rows to the hourly, device/browser, user
    and page rollups; the recomputation from events finds no difference."""
    records = mixed(300)
    assert await load(db_url, [records[:150], records[150:]]) == 300
    report = await verify(db_url)
    assert report.ok and report.events == 300
    want: dict[tuple[dt.datetime, str], int] = {}
    for r in records:
        key = (r[5].replace(minute=0, second=0, microsecond=0), r[3])
        want[key] = want.get(key, 0) + 1
    assert await hourly(db_url) == want
    dims = await fetch(
        db_url, "SELECT device_type, sum(events)::int AS n FROM rollup_day_dims GROUP BY 1"
    )
    assert {r["device_type"]: r["n"] for r in dims} == {
        "": 24,  # no session: counted under ''
        "mobile": sum(1 for i in range(300) if i % 13 and i % 3 == 0),
        "tablet": sum(1 for i in range(300) if i % 13 and i % 3 == 1),
        "desktop": sum(1 for i in range(300) if i % 13 and i % 3 == 2),
    }


async def test_reread_changes_nothing(db_url: str) -> None:
    """A batch loaded again (the staged upsert drops every row) leaves the rollups as they
    were; a batch half old, half new adds only its new half."""
    records = mixed(100)
    await load(db_url, [records[:60]])
    before = await hourly(db_url)
    assert await load(db_url, [records[:60]], direct=False) == 0
    assert await hourly(db_url) == before
    assert await load(db_url, [records[30:100]]) == 40  # direct fails on the old ids: staged
    assert (await verify(db_url)).ok
    assert sum((await hourly(db_url)).values()) == 100


async def test_purge_subtracts_and_drops_empty_rows(db_url: str) -> None:
    """A purge subtracts what it deleted; a rollup row whose count reaches zero is gone, so
    the rollups still equal a GROUP BY over events. TRUNCATE empties them."""
    records = mixed(200)
    await load(db_url, [records])
    result = await run_query(
        db_url, "purging", purge, PurgeFilter(type="purchase"), dry_run=False, allow_reload=False
    )
    assert result.deleted == 40
    assert (await verify(db_url)).ok
    assert all(t != "purchase" for _, t in await hourly(db_url))
    purchases = await fetch(db_url, "SELECT sum(purchases) AS p FROM rollup_user_hours")
    assert purchases[0]["p"] == 0
    await execute(db_url, "TRUNCATE events")
    assert (await verify(db_url)).ok
    summary = await read_summary(db_url)
    assert all(t.rows == 0 for t in summary.tables)


async def test_sandbox_shaped_session_fills_device_and_browser(db_url: str) -> None:
    """The sandbox's ``session.deviceType`` and ``session.browser`` are the dimensions, per
    UTC day."""
    await load(db_url, [[event(1, at=T0, device="tablet", browser="Edge")]])
    rows = await fetch(
        db_url, "SELECT day, type, device_type, browser, events FROM rollup_day_dims"
    )
    day = T0.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert [tuple(r) for r in rows] == [(day, "page_view", "tablet", "Edge", 1)]


def test_verify_command_reports_a_difference(db_url: str) -> None:
    """`etl rollups --verify` exits 0 when the rollups match and 12, naming the hour and type,
    when a rollup row was changed behind the triggers' back."""
    run_sync(load(db_url, [mixed(50)]))
    env = {"DATABASE_URL": db_url}
    ok = CliRunner().invoke(app, ["rollups", "--verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "match the 50 events" in ok.output
    run_sync(execute(db_url, "UPDATE rollup_hourly SET events = events + 1 WHERE type = 'click'"))
    bad = CliRunner().invoke(app, ["rollups", "--verify", "--json"], env=env)
    assert bad.exit_code == ExitCode.FINDINGS
    doc = json.loads(bad.output)
    assert doc["differences"] == doc["per_table"]["rollup_hourly"] >= 1
    assert doc["examples"][0]["key"]["type"] == "click"
    assert all(d["stored_events"] == d["expected_events"] + 1 for d in doc["examples"])


def test_rollups_summary(db_url: str) -> None:
    """`etl rollups` lists each table's rows and events and the hours covered."""
    run_sync(load(db_url, [mixed(30)]))
    out = CliRunner().invoke(app, ["rollups", "--json"], env={"DATABASE_URL": db_url})
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert {t["table"]: t["events"] for t in doc["tables"]}["rollup_hourly"] == 30
    assert doc["series"] == 4  # page_view, click, purchase, error


async def test_repaired_row_moves_between_groups(db_url: str) -> None:
    """A stripped row (no session, no user) later completed in place by a full copy moves
    from the '' device group to its device, and gains its user; nothing is counted twice."""
    await load(db_url, [[event(1, at=T0, user=None, device=None)]])
    await load(db_url, [[event(1, at=T0, user=USERS[0], device="tablet", browser="Edge")]])
    rows = await fetch(db_url, "SELECT device_type, browser, events FROM rollup_day_dims")
    assert [tuple(r) for r in rows] == [("tablet", "Edge", 1)]
    for table in ("rollup_user_hours", "rollup_users"):
        users = await fetch(db_url, f"SELECT user_id::text AS u, events FROM {table}")
        assert [tuple(r) for r in users] == [(USERS[0], 1)]
    assert (await verify(db_url)).ok


async def test_odd_batches_are_summed_exactly(db_url: str) -> None:
    """Batches spanning more than a day, times in other zones than UTC, and JSON the way
    PostgreSQL's ``->>`` reads it (a number, an object, escapes, a repeated key: the last
    wins) are grouped by the loader exactly as ``verify`` groups events."""
    plus5 = dt.timezone(dt.timedelta(hours=5, minutes=30))
    wide = mixed(90, step=dt.timedelta(minutes=47))  # ~70 hours in one batch
    odd = [
        event(1000 + i, at=(T0 + dt.timedelta(minutes=13 * i)).astimezone(plus5), user=USERS[0])
        for i in range(40)
    ]
    pages = [
        '{"page": 3}',
        '{"page": {"a": [1, 2]}}',
        '{"page": "caf\\u00e9 \\"x\\""}',
        '{"page": "a", "page": "b"}',
        '{"other": "page"}',
        '{"page": null}',
        "{}",
    ]
    odd = [(*r[:6], pages[i % len(pages)], *r[7:]) for i, r in enumerate(odd)]
    await load(db_url, [wide, odd])
    report = await verify(db_url)
    assert report.ok and report.events == 130


async def test_a_schema_12_database_upgrades_exactly(db_url: str) -> None:
    """A database loaded at schema 12 (devices per hour, no per-user totals) opened by this
    etl: the day dimensions and user totals are built from the old rollups, the hourly
    dimensions are gone, later loads add to the new tables, and verify finds no difference."""
    import asyncpg

    from etl.sink.schema import MIGRATIONS, SCHEMA_VERSION
    from etl.sources.events import EVENT_COLUMNS

    records = mixed(120, step=dt.timedelta(minutes=31))
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, ddl in MIGRATIONS:
            if version <= 12:
                await conn.execute(ddl)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        await conn.copy_records_to_table("events", records=records[:80], columns=EVENT_COLUMNS)
        old = await conn.fetchval("SELECT sum(events) FROM rollup_dims")
    finally:
        await conn.close()
    assert old == 80
    assert await load(db_url, [records[80:]]) == 40
    report = await verify(db_url)
    assert report.ok and report.events == 120
    tables = await fetch(db_url, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'rollup%'")
    assert sorted(r["tablename"] for r in tables) == [
        "rollup_day_dims",
        "rollup_hourly",
        "rollup_page_hours",
        "rollup_user_hours",
        "rollup_users",
    ]
    users = await fetch(db_url, "SELECT sum(events)::int AS n FROM rollup_users")
    assert users[0]["n"] == sum(1 for r in records if r[2] is not None)
    version = await fetch(db_url, "SELECT max(version) AS v FROM schema_version")
    assert version[0]["v"] == SCHEMA_VERSION == 13
