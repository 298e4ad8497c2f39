"""`etl status`: progress of the current or last run, read from the tables (any process, any time).

Without ``DATABASE_URL`` it attaches to the embedded PostgreSQL in ``--data-dir``: if an
``etl ingest`` is running, its server is shared (pgserver counts the processes using it and
only the last one stops it); if none is, the server is started for the query and stopped
again (about a second). A data dir with no database yet means no ingest has run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import fail, open_database, where_looked
from etl.cli.options import ApiKey, ApiUrlUnused, AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import EtlError

if TYPE_CHECKING:
    from etl.read.views import StatusSnapshot


def _print(snapshot: StatusSnapshot | None, as_json: bool, where: str) -> None:
    if as_json:
        from etl.read.views import snapshot_to_json

        doc: dict[str, object] = (
            snapshot_to_json(snapshot) if snapshot else {"schema": 1, "initialized": False}
        )
        doc["database"] = where
        typer.echo(json.dumps(doc))
        return
    if snapshot is None or not (snapshot.initialized or snapshot.streams):  # one plain line
        from etl.read.views import no_ingest

        typer.echo(no_ingest(where))
        return
    from rich.console import Console

    from etl.display import render_status

    Console().print(render_status(snapshot, where=where))


async def status_main(
    database_url: str | None, data_dir: Path, *, as_json: bool, watch: bool, interval_s: float
) -> None:
    from etl.read.status import read_status

    async with open_database(database_url, data_dir) as dsn:
        where = where_looked(database_url, data_dir, dsn)
        if dsn is None:
            _print(None, as_json, where)
            return
        if not watch:
            _print(await read_status(dsn), as_json, where)
            return
        if as_json:  # one JSON document per line, every interval
            while True:
                _print(await read_status(dsn), True, where)
                await asyncio.sleep(interval_s)
        from rich.console import Console

        from etl.display import watch_status

        await watch_status(Console(), lambda: read_status(dsn), interval_s=interval_s, where=where)


@app.command()
def status(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    api_url: ApiUrlUnused = None,
    api_key: ApiKey = "",
    as_json: AsJson = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes (--watch).")
    ] = 2.0,
) -> None:
    """Progress of the current or last ingest: loaded / expected, rates, ETA, shards.

    Reads only the progress and runs tables, so it answers at once while a run is live.
    Names the database it looked at; prints "no ingest has run against <it> yet" (exit 0)
    on a fresh database.
    --json prints a versioned document ("schema": 1; see etl/read/views.py).
    """
    del api_url, api_key  # accepted for uniformity with the other commands; status needs the DB
    try:
        asyncio.run(
            status_main(database_url, data_dir, as_json=as_json, watch=watch, interval_s=interval)
        )
    except EtlError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        return
