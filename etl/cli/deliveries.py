"""`etl deliveries`: the delivery log (loads into PostgreSQL, requests to push destinations)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import fail, open_database
from etl.cli.options import AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError

if TYPE_CHECKING:
    from etl.read.deliveries import DeliveryRow

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str | None, flag: str, now: dt.datetime) -> dt.datetime | None:
    """An ISO-8601 time (UTC when no offset) or an age such as ``90m``, ``2h``, ``7d``."""
    if value is None:
        return None
    m = _AGO.match(value.strip())
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"{flag} must be an ISO time (2026-01-27T10:00:00Z) or an age (90m, 2h, 7d), "
            f"got {value!r}"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def _main(database_url: str | None, data_dir: Path, **filters: object) -> list[DeliveryRow]:
    async with open_database(database_url, data_dir) as dsn:
        from etl.read.deliveries import read_deliveries

        return [] if dsn is None else await read_deliveries(dsn, **filters)  # type: ignore[arg-type]


def _table(rows: list[DeliveryRow]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, padding=(0, 1), header_style="bold", show_edge=False)
    for name in (
        "sent (UTC)",
        "destination",
        "dataset",
        "rows",
        "try",
        "http",
        "accepted",
        "rejected",
        "ok",
        "ingestion / error",
    ):
        table.add_column(name, no_wrap=name != "ingestion / error", overflow="fold")
    for r in rows:
        table.add_row(
            r.sent_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            r.destination,
            r.dataset or "–",
            f"{r.rows:,}",
            "–" if r.attempt is None else str(r.attempt),
            "–" if r.http_status is None else str(r.http_status),
            "–" if r.accepted is None else f"{r.accepted:,}",
            "–" if r.rejected is None else f"{r.rejected:,}",
            "yes" if r.success else "no",
            r.error or r.ingestion_id or "",
        )
    Console(width=None if sys.stdout.isatty() else 180).print(table)


@app.command()
def deliveries(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    destination: Annotated[
        str | None, typer.Option(help="Only this destination: postgresql, databox.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="ok or failed.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO) or age (2h, 7d).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO) or age.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = 50,
    as_json: AsJson = False,
) -> None:
    """The delivery log, newest first: every batch loaded and every push request."""
    try:
        if status is not None and status not in ("ok", "failed"):
            raise ConfigError(f"--status must be ok or failed, got {status!r}")
        now = dt.datetime.now(dt.UTC)
        rows = asyncio.run(
            _main(
                database_url,
                data_dir,
                destination=destination,
                status=status,
                since=parse_time(since, "--since", now),
                until=parse_time(until, "--until", now),
                limit=limit,
            )
        )
    except EtlError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"schema": 1, "deliveries": [r.to_json() for r in rows]}))
    elif not rows:
        typer.echo("no deliveries recorded (for these filters)")
    else:
        _table(rows)
