"""`etl health`: one word for a monitor: ``ok`` (exit 0) or ``degraded: <failing parts>`` (exit 8).

Checks: the database answers; the API answers ``GET {api_url}`` (the index, ``/api/v1``) and
accepts the key (skipped without ``--api-url``: the bundled sandbox only lives during a run);
the last run neither failed nor ended incomplete (fewer events than the source states); a
running run's heartbeat is fresh. A database where no ingest has
run yet is healthy (nothing has failed).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import open_database
from etl.cli.options import ApiKey, ApiUrlHealth, AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import EtlError, ExitCode
from etl.read.health import Check, run_checks
from etl.sink.dsn import redact_dsn

if TYPE_CHECKING:
    from etl.read.views import StatusSnapshot

__all__ = ["Check", "api_check", "run_checks"]


async def api_check(api_url: str | None, api_key: str, *, timeout_s: float = 5.0) -> Check:
    if not api_url:
        return Check("api", True, "not configured (sandbox)")
    import aiohttp  # here, not at the top: `etl status` should not pay for importing it

    where = redact_dsn(api_url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(api_url, headers={"X-API-Key": api_key}) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno:
            text = f"cannot connect: {os.strerror(exc.os_error.errno).lower()}"
        elif isinstance(exc, TimeoutError):
            text = "no answer in time"
        if api_key:
            text = text.replace(api_key, "***")
        return Check("api", False, f"api unreachable at {where} ({text})")
    if status in (401, 403):
        return Check("api", False, "api key rejected")
    if status >= 400:
        return Check("api", False, f"api at {where} answered HTTP {status}")
    return Check("api", True, where)


async def health_main(
    database_url: str | None, data_dir: Path, api_url: str | None, api_key: str, stale_s: float
) -> list[Check]:
    api = asyncio.create_task(api_check(api_url, api_key))
    snapshot: StatusSnapshot | None = None
    try:
        async with open_database(database_url, data_dir) as dsn:
            if dsn is None:
                db = Check("database", True, f"none yet in {data_dir} (no ingest has run)")
            else:
                from etl.read.status import read_status

                snapshot = await read_status(dsn)
                db = Check("database", True, redact_dsn(dsn))
    except EtlError as exc:
        db = Check("database", False, f"database unreachable: {exc}")
    checks = [db, await api]
    if db.ok:
        checks.extend(run_checks(snapshot, stale_after_s=stale_s))
        checks.extend(stream_checks(snapshot))
    return checks


def stream_checks(snapshot: StatusSnapshot | None) -> list[Check]:
    """One check per declarative stream (`etl sync`): degraded when its last sync failed."""
    if snapshot is None:
        return []
    return [
        Check(
            f"stream {r.source}.{r.stream}",
            r.status != "failed",
            f"stream {r.source}.{r.stream} failed: {r.error or 'no error recorded'}"
            if r.status == "failed"
            else r.status,
        )
        for r in snapshot.streams
    ]


@app.command()
def health(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    api_url: ApiUrlHealth = None,
    api_key: ApiKey = "",
    as_json: AsJson = False,
    stale_after: Annotated[
        float,
        typer.Option(help="Seconds without heartbeat after which a running run is stalled."),
    ] = 60.0,
) -> None:
    """Print "ok" (exit 0) or "degraded: <failing parts>" (exit 8), then one line per check.

    Exit 1 stays an internal error, so a monitor can tell "degraded" from "etl broke".
    """
    checks = asyncio.run(health_main(database_url, data_dir, api_url, api_key, stale_after))
    problems = [c.detail for c in checks if not c.ok]
    verdict = "degraded" if problems else "ok"
    if as_json:
        doc = {
            "schema": 1,
            "status": verdict,
            "problems": problems,
            "checks": [asdict(c) for c in checks],
        }
        typer.echo(json.dumps(doc))
    else:
        typer.echo(f"degraded: {'; '.join(problems)}" if problems else "ok")
        for c in checks:  # last_run -> "last run"; a stream's name is shown as it is
            label = c.name if " " in c.name else c.name.replace("_", " ")
            typer.echo(f"  {label}: {'ok' if c.ok else 'FAIL'} · {c.detail}")
    if problems:
        raise typer.Exit(ExitCode.DEGRADED)
