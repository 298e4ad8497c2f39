"""`etl purge`: deletes what was asked, keeps the rollups exact, and is not undone by a reload."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from etl.cli import app
from etl.errors import ExitCode
from etl.read.db import run_query
from etl.read.rollups import verify
from etl.sink.purge import PurgeFilter, purge
from tests.fixtures_db import run_sync
from tests.read_data import T0, USERS, fetch, load, mixed

U = USERS[2]


async def n_events(dsn: str, where: str = "true") -> int:
    return int((await fetch(dsn, f"SELECT count(*) AS n FROM events WHERE {where}"))[0]["n"])


async def test_purge_user_in_range_and_dry_run(db_url: str) -> None:
    """A dry run counts and changes nothing; the purge deletes exactly the user's events in
    [since, until) and the rollups still match events."""
    records = mixed(300)
    await load(db_url, [records])
    since, until = T0 + dt.timedelta(hours=5), T0 + dt.timedelta(hours=20)
    f = PurgeFilter(user_id=U, since=since, until=until)
    want = sum(1 for r in records if r[2] == U and since <= r[5] < until)
    dry = await run_query(db_url, "p", purge, f, dry_run=True, allow_reload=False)
    assert (dry.matched, dry.deleted) == (want, 0) and await n_events(db_url) == 300
    done = await run_query(db_url, "p", purge, f, dry_run=False, allow_reload=False)
    assert done.deleted == want > 0
    assert await n_events(db_url) == 300 - want
    assert (await verify(db_url)).ok


async def test_purged_events_are_not_reloaded(db_url: str) -> None:
    """After a purge, loading the same events again (a re-sync, an overlap) skips them;
    after a purge with allow_reload they come back."""
    records = mixed(100)
    await load(db_url, [records])
    await run_query(
        db_url, "p", purge, PurgeFilter(type="click"), dry_run=False, allow_reload=False
    )
    assert await load(db_url, [records], direct=False) == 0
    assert await n_events(db_url, "type = 'click'") == 0
    await run_query(db_url, "p", purge, PurgeFilter(type="error"), dry_run=False, allow_reload=True)
    assert await load(db_url, [records], direct=False) == 20  # the errors, not the clicks
    assert (await verify(db_url)).ok


def test_cli_needs_yes_off_a_terminal(db_url: str) -> None:
    """Off a terminal without --yes nothing is deleted (exit 2); with --yes it is; with no
    condition at all it refuses (exit 2); --dry-run --json reports the count."""
    run_sync(load(db_url, [mixed(50)]))
    env = {"DATABASE_URL": db_url}
    out = CliRunner().invoke(app, ["purge", "--type", "error"], env=env)
    assert out.exit_code == ExitCode.CONFIG and "--yes" in out.output
    out = CliRunner().invoke(app, ["purge", "--yes"], env=env)
    assert out.exit_code == ExitCode.CONFIG and "at least one of" in out.output
    out = CliRunner().invoke(app, ["purge", "-t", "error", "--dry-run", "--json"], env=env)
    assert out.exit_code == 0 and json.loads(out.output)["matched"] == 10
    out = CliRunner().invoke(app, ["purge", "-t", "error", "--yes"], env=env)
    assert out.exit_code == 0, out.output
    assert "deleted 10 events" in out.output and "will not be loaded again" in out.output
    assert run_sync(n_events(db_url, "type = 'error'")) == 0
