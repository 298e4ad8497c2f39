"""`etl runs`: the run history, newest first."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli import app
from etl.cli.db import NO_INGEST, fail, open_database
from etl.cli.options import ApiKey, ApiUrl, AsJson, DatabaseUrl, DataDir
from etl.errors import EtlError
from etl.fmt import human_duration

if TYPE_CHECKING:
    from rich.table import Table

    from etl.status import RunRow


async def runs_main(database_url: str | None, data_dir: Path, limit: int) -> list[RunRow]:
    async with open_database(database_url, data_dir) as dsn:
        from etl.status import read_runs

        return [] if dsn is None else await read_runs(dsn, limit=limit)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "–"


def runs_table(runs: list[RunRow]) -> Table:
    from rich.table import Table

    table = Table(box=None, padding=(0, 1), header_style="bold", show_edge=False)
    for name in ("run", "started (UTC)", "ended (UTC)", "took", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("inserted", "dupes", "requests", "retries", "429s", "quar."):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in runs:
        table.add_row(
            str(r.run_id),
            _when(r.started_at),
            _when(r.ended_at),
            human_duration(r.duration_s),
            r.status,
            f"{r.inserted:,}",
            f"{r.duplicates:,}",
            f"{r.requests:,}",
            f"{r.retries:,}",
            f"{r.rate_limited:,}",
            f"{r.quarantined:,}",
            r.error or "",
        )
    return table


@app.command()
def runs(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = "",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Runs to show.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Run history: start, end, status, rows inserted and deduplicated, requests, retries,
    429s, quarantined, error."""
    del api_url, api_key  # accepted for uniformity with the other commands
    try:
        history = asyncio.run(runs_main(database_url, data_dir, limit))
    except EtlError as exc:
        raise fail(exc) from None
    if as_json:
        from etl.status import run_to_json

        typer.echo(json.dumps({"schema": 1, "runs": [run_to_json(r) for r in history]}))
    elif not history:
        typer.echo(NO_INGEST)
    else:
        # A pipe or file has no width: give the table room instead of rich's default 80.
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(runs_table(history))
