"""`etl events --user`: a user's events newest first, filters, keyset paging, clear errors."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from etl.cli import app
from etl.errors import ExitCode
from etl.read.events import user_events
from etl.read.params import parse_before
from tests.fixtures_db import run_sync
from tests.read_data import T0, USERS, event, load, mixed

U = USERS[1]


async def test_newest_first_with_details(db_url: str) -> None:
    """Only the user's events, newest first, properties and session as JSON values."""
    records = mixed(120)
    await load(db_url, [records])
    page = await user_events(db_url, U, limit=1000)
    mine = sorted((r for r in records if r[2] == U), key=lambda r: r[5], reverse=True)
    assert [e.id for e in page.events] == [r[0] for r in mine]
    assert page.next_before is None
    first = page.events[0]
    assert first.properties == json.loads(mine[0][6])
    assert first.session is None or first.session["deviceType"] in ("mobile", "tablet", "desktop")


async def test_filters(db_url: str) -> None:
    """--type (several), --since (inclusive) and --until (exclusive) narrow the list."""
    records = mixed(200)
    await load(db_url, [records])
    since, until = T0 + dt.timedelta(hours=3), T0 + dt.timedelta(hours=12)
    page = await user_events(
        db_url, U, types=("click", "purchase"), since=since, until=until, limit=1000
    )
    want = {
        r[0]
        for r in records
        if r[2] == U and r[3] in ("click", "purchase") and since <= r[5] < until
    }
    assert {e.id for e in page.events} == want and want


async def test_keyset_pages_cover_everything_once(db_url: str) -> None:
    """Following next_before visits every event exactly once, even when many share one
    timestamp (ties are ordered by id)."""
    same = [event(1000 + i, at=T0, user=U) for i in range(7)]
    await load(db_url, [mixed(60), same])
    seen: list[str] = []
    before = None
    while True:
        page = await user_events(db_url, U, before=before, limit=4)
        seen += [e.id for e in page.events]
        if page.next_before is None:
            break
        before = parse_before(page.next_before)
    total = sum(1 for r in mixed(60) if r[2] == U) + 7
    assert len(seen) == len(set(seen)) == total


async def test_pages_over_many_sparse_hours_match_a_plain_query(db_url: str) -> None:
    """A user active in 60 separate hours, loaded in two batches: every page, with and
    without --type/--since/--until, equals the plain ORDER BY over events."""
    records = mixed(400, step=dt.timedelta(minutes=37))
    await load(db_url, [records[:200], records[200:]])
    lo, hi = T0 + dt.timedelta(hours=20), T0 + dt.timedelta(hours=200)
    for types, since, until in (((), None, None), (("purchase",), None, None), ((), lo, hi)):
        want = sorted(
            (
                (r[5], r[0])
                for r in records
                if r[2] == U
                and (not types or r[3] in types)
                and (since is None or r[5] >= since)
                and (until is None or r[5] < until)
            ),
            reverse=True,
        )
        seen: list[tuple[dt.datetime, str]] = []
        before = None
        while True:
            page = await user_events(
                db_url, U, types=types, since=since, until=until, before=before, limit=7
            )
            seen += [(e.occurred_at, e.id) for e in page.events]
            if page.next_before is None:
                break
            before = parse_before(page.next_before)
        assert seen == want and want


def test_cli_json_and_paging_hint(db_url: str) -> None:
    """The table ends with the --before value of the next page; --json is a document."""
    run_sync(load(db_url, [mixed(80)]))
    env = {"DATABASE_URL": db_url}
    out = CliRunner().invoke(app, ["events", "--user", U, "--limit", "3"], env=env)
    assert out.exit_code == 0, out.output
    assert "more: --before " in out.output
    doc = json.loads(
        CliRunner().invoke(app, ["events", "-u", U, "-n", "3", "--json"], env=env).output
    )
    assert len(doc["events"]) == 3 and doc["next_before"]
    assert doc["events"][0]["occurred_at"].endswith("Z")


def test_bad_input_exits_2(db_url: str) -> None:
    """A malformed id or time is one clear line and exit 2, before any database work."""
    env = {"DATABASE_URL": db_url}
    for args, word in (
        (["--user", "not-a-uuid"], "--user must be a UUID"),
        (["--user", U, "--since", "yesterday"], "--since must be an ISO 8601 time"),
        (["--user", U, "--before", "2026-01-01T00:00:00Z/xyz"], "--before must be a UUID"),
        (["--user", U, "--since", "2026-02-01", "--until", "2026-01-01"], "--since must be"),
    ):
        out = CliRunner().invoke(app, ["events", *args], env=env)
        assert out.exit_code == ExitCode.CONFIG, out.output
        assert word in out.output and "Traceback" not in out.output


def test_database_down_exits_6() -> None:
    """An unreachable database is a clear error and exit 6, never a traceback; the password
    is not shown."""
    env = {"DATABASE_URL": "postgresql://etl:hunter2-pw@127.0.0.1:1/etl"}
    out = CliRunner().invoke(app, ["events", "--user", U], env=env)
    assert out.exit_code == ExitCode.DATABASE, out.output
    assert "cannot connect to PostgreSQL" in out.output
    assert "hunter2-pw" not in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)  # no traceback
