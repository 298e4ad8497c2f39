"""`etl push`: drain the outbox into Databox's Ingestion API (declaring datasets first)."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from etl.cli.db import database, fail
from etl.cli.options import DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import EtlError, ExitCode
from etl.settings import PushSettings

if TYPE_CHECKING:
    from etl.push.pusher import PushCounters

_D: dict[str, Any] = {f.name: f.default for f in fields(PushSettings)}

DataboxUrl = Annotated[
    str | None,
    typer.Option(
        "--databox-url",
        envvar="DATABOX_API_URL",
        help="Databox API base (the sandbox's: http://HOST:PORT/databox). Unset: "
        "https://api.databox.com, or the bundled sandbox's under `etl ingest --push`.",
        show_default=False,
    ),
]
DataboxKey = Annotated[
    str,
    typer.Option(
        "--databox-key",
        envvar="DATABOX_API_KEY",
        help="Databox API key (sent as x-api-key; never logged).",
        show_default=False,
    ),
]
Datasets = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset",
        envvar="ETL_PUSH_DATASETS",
        help="Declare a dataset to push (repeatable; 'all'): events, hourly_event_counts, "
        "daily_active_users, purchases_hourly, conversion_daily, error_share_daily. "
        "A new one is owed every event already loaded.",
        show_default=False,
    ),
]
PushDatasets = Annotated[
    list[str] | None,
    typer.Option(
        "--push-dataset",
        envvar="ETL_PUSH_DATASETS",
        help="With --push: declare a dataset to push (repeatable; 'all'; see `etl push`).",
        show_default=False,
    ),
]
PushRate = Annotated[
    float, typer.Option("--push-rate", envvar="ETL_PUSH_RATE", help="Requests per second.")
]


def push_settings(
    url: str | None, key: str, datasets: list[str] | None, rate: float, **kw: Any
) -> PushSettings:
    names = tuple(n for item in datasets or () for n in item.replace(",", " ").split())
    return PushSettings(databox_url=url, databox_key=key, datasets=names, rate_per_s=rate, **kw)


def summary(c: PushCounters, elapsed_s: float) -> str:
    rate = c.records / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"push done ◆ {c.records:,} records in {c.chunks:,} requests accepted ({rate:,.0f}/s) ◆ "
        f"verified {c.verified:,} ingestions: {c.appended:,} appended, {c.overwritten:,} "
        f"overwritten, {c.rejected:,} rejected ◆ {c.retries:,} retries, {c.rate_limited:,}×429"
        + (f" ◆ {c.unverified:,} unverified" if c.unverified else "")
    )


async def _main(
    database_url: str | None, data_dir: Path, settings: PushSettings
) -> tuple[PushCounters, float]:
    import time

    from etl.clock import MonotonicClock
    from etl.delivery import DeliveryLog
    from etl.push.run import push_main

    started = time.monotonic()
    async with database(database_url, data_dir) as dsn:
        with DeliveryLog(data_dir / "delivery.jsonl") as jsonl:
            counters = await push_main(
                dsn,
                settings,
                MonotonicClock(),
                on_delivery=lambda d: jsonl.write_line(d.to_json()),
                on_message=lambda text: typer.echo(text, err=True),
            )
    return counters, time.monotonic() - started


@app.command()
def push(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    databox_url: DataboxUrl = None,
    databox_key: DataboxKey = "",
    dataset: Datasets = None,
    push_rate: PushRate = _D["rate_per_s"],
    max_attempts: Annotated[
        int,
        typer.Option(
            "--push-attempts", envvar="ETL_PUSH_ATTEMPTS", help="Tries per request on 5xx."
        ),
    ] = _D["max_attempts"],
    verify_wait: Annotated[
        float,
        typer.Option(
            "--verify-wait",
            envvar="ETL_VERIFY_WAIT",
            help="Seconds to wait for ingestions to process.",
        ),
    ] = _D["verify_wait_s"],
) -> None:
    """Push what is owed to Databox, exactly once per primary key; verify the ingestions.

    Exit 14 when Databox refuses the key, 15 when it keeps failing (rerun resumes)."""
    try:
        settings = push_settings(
            databox_url,
            databox_key,
            dataset,
            push_rate,
            max_attempts=max_attempts,
            verify_wait_s=verify_wait,
        )
        counters, elapsed = asyncio.run(_main(database_url, data_dir, settings))
    except EtlError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        typer.echo("push stopped: what Databox accepted is recorded; rerun to resume", err=True)
        raise typer.Exit(ExitCode.PARTIAL) from None
    typer.echo(summary(counters, elapsed))
