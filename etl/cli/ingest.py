"""`etl ingest`: the composition root of a run. Builds Settings, wires the parts, exits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from etl.cli import app
from etl.cli.bundled import bundled_sandbox
from etl.cli.options import ApiKey, ApiUrl, DatabaseUrl, DataDir, LogFormat, Quiet
from etl.clock import MonotonicClock
from etl.delivery import DeliveryLog
from etl.display import human_duration, make_reporter
from etl.errors import EtlError, ExitCode
from etl.metrics import write_metrics
from etl.models import Reporter, RunCounters, ShardState
from etl.pipeline import Outcome, Run
from etl.settings import Settings
from etl.sink.embedded import EmbeddedPostgres
from etl.sink.postgres import PostgresSink
from etl.source.datasync import DataSyncSource
from etl.source.http import Http

SANDBOX_DEMO_KEY = "ds_sandbox_demo_key_0000000000000000"


def summary(outcome: Outcome, elapsed_s: float) -> str:
    c = outcome.counters
    total = f"/{outcome.expected_total:,}" if outcome.expected_total else ""
    head = {
        "succeeded": "ingest complete",
        "partial": f"ingest stopped ({outcome.reason or 'unfinished'}); rerun to resume",
        "failed": f"ingest failed: {outcome.error}",
    }[outcome.status]
    return (
        f"{head} ◆ {outcome.loaded_total:,}{total} events in the table ◆ "
        f"{c.inserted:,} new, {c.duplicates:,} duplicates, {c.quarantined:,} quarantined ◆ "
        f"{c.requests:,} requests, {c.retries:,} retries, {c.rate_limited:,}×429, "
        f"{c.cursor_resets:,} cursor resets ◆ {human_duration(elapsed_s)}"
    )


class MetricsTap:
    """A Reporter that also writes the Prometheus textfile every ``interval_s``."""

    def __init__(self, inner: Reporter, path: Path, *, interval_s: float = 15.0) -> None:
        self.inner = inner
        self.path = path
        self.interval_s = interval_s
        self.started = time.time()
        self._last = 0.0

    def message(self, text: str) -> None:
        self.inner.message(text)

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        self.inner.update(counters, shards)
        now = time.time()
        if now - self._last >= self.interval_s:
            self._last = now
            self.write(counters, shards, "running")

    def write(self, counters: RunCounters, shards: list[ShardState], status: str) -> None:
        loaded = counters.extra.get("loaded_before", 0) + counters.inserted
        write_metrics(
            self.path,
            counters,
            shards,
            run_status=status,
            run_started_s=self.started,
            now_s=time.time(),
            loaded_total=loaded,
            expected_total=counters.extra.get("expected_total") or None,
        )


async def ingest_main(settings: Settings, reporter: Reporter) -> tuple[Outcome, float]:
    clock = MonotonicClock()
    counters = RunCounters()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is None:
            reporter.message(f"no DATABASE_URL: using embedded PostgreSQL in {settings.data_dir}")
            dsn = await stack.enter_async_context(EmbeddedPostgres(settings.data_dir / "pg"))
        else:
            dsn = settings.database_url
        api_url, api_key = settings.api_url, settings.api_key
        delivery = stack.enter_context(DeliveryLog(settings.data_dir / "delivery.jsonl"))
        sink = await stack.enter_async_context(
            PostgresSink(dsn, loaders=settings.loaders, on_delivery=delivery)
        )
        await sink.try_lock()
        if api_url is None:
            api_key = api_key or SANDBOX_DEMO_KEY
            api_url = await stack.enter_async_context(
                bundled_sandbox(api_key, events=settings.sandbox_events)
            )
            reporter.message(
                f"no DATASYNC_API_URL: started the bundled sandbox ({settings.sandbox_events:,} "
                f"events) at {api_url}"
            )
        http = await stack.enter_async_context(
            Http(api_url, api_key, timeout_s=settings.request_timeout_s)
        )
        source = DataSyncSource(http, clock, counters, settings.source_options())
        reporter.message(await source.start())
        await sink.start_run(source.strategy_used)
        tap = MetricsTap(reporter, settings.metrics_file) if settings.metrics_file else None
        run = Run(
            source, sink, tap or reporter, clock, settings.pipeline_options(), counters=counters
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, run.request_stop, signal.Signals(sig).name)
        try:
            outcome = await run.execute()
        except BaseException as exc:
            with contextlib.suppress(EtlError):
                await sink.finish_run("failed", counters, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        error = f"{outcome.error}" if outcome.error else (outcome.reason or None)
        await sink.finish_run(outcome.status, counters, error)
        if tap is not None:
            tap.write(counters, outcome.shards, outcome.status)
    return outcome, time.monotonic() - started


@app.command()
def ingest(
    data_dir: DataDir,
    api_url: ApiUrl = None,
    api_key: ApiKey = "",
    database_url: DatabaseUrl = None,
    strategy: Annotated[
        str, typer.Option(envvar="ETL_STRATEGY", help="auto (feed + /events), events or feed.")
    ] = "auto",
    page_size: Annotated[
        int, typer.Option(envvar="ETL_PAGE_SIZE", help="Events per request.")
    ] = 5000,
    shards: Annotated[
        int, typer.Option(envvar="ETL_SHARDS", help="Time slices fetched in parallel.")
    ] = 16,
    events_concurrency: Annotated[
        int, typer.Option(envvar="ETL_EVENTS_CONCURRENCY", help="Fetchers on /events (0: off).")
    ] = 2,
    feed_concurrency: Annotated[
        int, typer.Option(envvar="ETL_FEED_CONCURRENCY", help="Fetchers on the feed (0: off).")
    ] = 4,
    feed_window: Annotated[
        float,
        typer.Option(
            envvar="ETL_FEED_WINDOW",
            help="Seconds of the feed's hidden sliding-window throttle (spec: about 300).",
        ),
    ] = 300.0,
    loaders: Annotated[
        int, typer.Option(envvar="ETL_LOADERS", help="Database connections loading in parallel.")
    ] = 2,
    batch_size: Annotated[
        int, typer.Option(envvar="ETL_BATCH_SIZE", help="Max events per transaction.")
    ] = 10_000,
    max_runtime: Annotated[
        float | None,
        typer.Option(envvar="ETL_MAX_RUNTIME", help="Seconds; then stop gracefully (resumable)."),
    ] = None,
    request_timeout: Annotated[
        float, typer.Option(envvar="ETL_REQUEST_TIMEOUT", help="Seconds per HTTP request.")
    ] = 60.0,
    max_attempts: Annotated[
        int, typer.Option(envvar="ETL_MAX_ATTEMPTS", help="Tries per page on transient faults.")
    ] = 10,
    sandbox_events: Annotated[
        int,
        typer.Option(envvar="SANDBOX_EVENTS", help="Dataset size of the bundled sandbox."),
    ] = 3_000_000,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            envvar="ETL_METRICS_FILE", help="Prometheus textfile to write (node_exporter)."
        ),
    ] = None,
    quiet: Quiet = False,
    log_format: LogFormat = "text",
    progress_interval: Annotated[
        float, typer.Option(envvar="ETL_PROGRESS_INTERVAL", help="Seconds between log lines.")
    ] = 10.0,
) -> None:
    """Load every event from the DataSync API into PostgreSQL: exactly once, resumable."""
    try:
        settings = Settings(
            api_url=api_url,
            api_key=api_key,
            database_url=database_url,
            data_dir=data_dir,
            strategy=strategy,  # type: ignore[arg-type]
            page_size=page_size,
            shards=shards,
            events_concurrency=events_concurrency,
            feed_concurrency=feed_concurrency,
            feed_window_s=feed_window,
            loaders=loaders,
            batch_size=batch_size,
            max_runtime_s=max_runtime,
            request_timeout_s=request_timeout,
            max_attempts=max_attempts,
            sandbox_events=sandbox_events,
            quiet=quiet,
            log_format=log_format,
            progress_interval_s=progress_interval,
            metrics_file=metrics_file,
        )
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    reporter = make_reporter(
        quiet=quiet,
        log_format=log_format,
        interval_s=settings.progress_interval_s,
        stream=sys.stderr,
        is_tty=sys.stderr.isatty(),
    )
    try:
        with reporter:
            outcome, elapsed = asyncio.run(ingest_main(settings, reporter))
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(ExitCode.PARTIAL) from None
    typer.echo(summary(outcome, elapsed))
    if outcome.status == "succeeded":
        return
    if outcome.status == "partial":
        raise typer.Exit(ExitCode.PARTIAL)
    raise typer.Exit(outcome.error.exit_code if outcome.error else ExitCode.INTERNAL)
