"""`etl runs`: the run history, newest first."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import fail, open_database, where_looked
from etl.cli.options import ApiKey, ApiUrlUnused, AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import EtlError

if TYPE_CHECKING:
    from etl.read.views import RunRow, StreamRow


async def runs_main(
    database_url: str | None, data_dir: Path, limit: int
) -> tuple[list[RunRow], tuple[StreamRow, ...], str]:
    """The newest ``limit`` runs, every declarative stream's last sync, and where."""
    async with open_database(database_url, data_dir) as dsn:
        from etl.read.runs import read_runs
        from etl.read.status import read_streams

        where = where_looked(database_url, data_dir, dsn)
        if dsn is None:
            return [], (), where
        return await read_runs(dsn, limit=limit), await read_streams(dsn), where


@app.command()
def runs(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    api_url: ApiUrlUnused = None,
    api_key: ApiKey = "",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Runs to show.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Run history, newest first: start, end, status, what became of the events, requests,
    retries, 429s, error.

    The event counters add up: received = inserted + dupes + quar. + out of range.
    dupes: already in the table (a re-read at a shard boundary, an incremental overlap,
    rows kept by a reset) or repeated on a page. quar.: invalid, kept in the quarantine
    table with the reason. out of range: on a page of one shard but inside another shard's
    time slice, which loads it. A long error is cut in the table; --json has all of it.
    """
    del api_url, api_key  # accepted for uniformity with the other commands
    try:
        history, streams, where = asyncio.run(runs_main(database_url, data_dir, limit))
    except EtlError as exc:
        raise fail(exc) from None
    if as_json:
        from etl.read.views import run_to_json, stream_to_json

        doc = {
            "schema": 1,
            "runs": [run_to_json(r) for r in history],
            "streams": [stream_to_json(r) for r in streams],  # `etl sync`'s last sync each
        }
        typer.echo(json.dumps(doc))
        return
    # A pipe or file has no width: give the table room instead of rich's default 80.
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 1000)
    if not history:
        from etl.read.views import no_ingest

        typer.echo(no_ingest(where))
    else:
        from etl.display import runs_table

        console.print(runs_table(history))
    if streams:
        from etl.display.status import streams_table

        console.print(streams_table(streams))
