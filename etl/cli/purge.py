"""`etl purge`: delete events by user, type and/or time range (rollups kept exact)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from etl.cli.db import fail
from etl.cli.options import AsJson, DatabaseUrl, DataDir
from etl.cli.read import Since, Until, echo_json, no_ingest, run_read
from etl.cli.root import app
from etl.errors import ConfigError, EtlError


@app.command()
def purge(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="This user's events.")] = None,
    type_: Annotated[str | None, typer.Option("--type", "-t", help="Events of this type.")] = None,
    since: Since = None,
    until: Until = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (scripts).")] = False,
    allow_reload: Annotated[
        bool,
        typer.Option("--allow-reload", help="Let a later ingest load these events again."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Delete events (all given conditions must hold) and subtract them from the rollups,
    in one transaction. Later ingests skip the purged events unless --allow-reload.

    On a terminal it shows the count and asks; elsewhere it needs --yes (or --dry-run).
    """
    from etl.read import params
    from etl.sink.purge import PurgeFilter, count
    from etl.sink.purge import purge as do_purge

    try:
        f = PurgeFilter(
            params.parse_uuid(user, "--user") if user else None,
            type_,
            params.parse_time(since, "--since") if since else None,
            params.parse_time(until, "--until") if until else None,
        )
        params.check_range(f.since, f.until)
        if not (dry_run or yes or sys.stdin.isatty()):
            raise ConfigError("not on a terminal: pass --yes to purge (or --dry-run to count)")
    except EtlError as exc:
        raise fail(exc) from None
    if not (dry_run or yes):
        from etl.read.db import run_query

        n = run_read(database_url, data_dir, lambda dsn: run_query(dsn, "counting", count, f))
        if n is None:
            typer.echo(no_ingest())
            return
        if not typer.confirm(f"delete {n:,} events?", default=False):
            typer.echo("nothing deleted")
            raise typer.Exit(1)

    async def go(dsn: str) -> object:
        from etl.read.db import run_query

        return await run_query(
            dsn, "purging", do_purge, f, dry_run=dry_run, allow_reload=allow_reload
        )

    result = run_read(database_url, data_dir, go)
    if result is None:
        typer.echo(no_ingest())
    elif as_json:
        echo_json(result)
    else:
        from etl.sink.purge import PurgeResult

        assert isinstance(result, PurgeResult)
        if result.dry_run:
            typer.echo(f"would delete {result.matched:,} events (dry run)")
        else:
            later = "may be loaded again" if allow_reload else "will not be loaded again"
            typer.echo(f"deleted {result.deleted:,} events (purge {result.purge_id}); they {later}")
