"""The composition root of `etl ingest`: opens every part, runs the pipeline, records the run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from pathlib import Path

from etl.cli.bundled import bundled_sandbox
from etl.cli.db import embedded_pgdata
from etl.clock import MonotonicClock
from etl.delivery import DeliveryLog
from etl.fmt import human_duration
from etl.metrics import write_metrics
from etl.models import Reporter, RunCounters, ShardState
from etl.pipeline import Outcome, Run
from etl.sandbox.config import DEMO_API_KEY
from etl.settings import Settings
from etl.sink.embedded import EmbeddedPostgres
from etl.sink.postgres import PostgresSink
from etl.source.datasync import DataSyncSource
from etl.source.http import Http
from etl.wiring import pipeline_options, run_ingest, source_options


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
        f"{c.inserted:,} new, {c.duplicates:,} duplicates, {c.quarantined:,} quarantined"
        f"{_repairs(c)} ◆ "
        f"{c.requests:,} requests, {c.retries:,} retries, {c.rate_limited:,}×429, "
        f"{c.cursor_resets:,} cursor resets ◆ {human_duration(elapsed_s)}"
    )


def _repairs(c: RunCounters) -> str:
    """The incomplete-event figures of a run, when there were any."""
    parts = [
        f"{c.extra[key]:,} {label}"
        for key, label in (
            ("incomplete_reread", "incomplete re-read complete"),
            ("repaired", "repaired"),
        )
        if c.extra.get(key)
    ]
    return "".join(f", {p}" for p in parts)


class MetricsTap:
    """A Reporter that also writes the Prometheus textfile every ``interval_s``."""

    def __init__(self, inner: Reporter, path: Path, *, interval_s: float = 15.0) -> None:
        self.inner = inner
        self.path = path
        self.interval_s = interval_s
        self.started = time.time()
        self._last = 0.0
        self.failed = False

    def message(self, text: str) -> None:
        self.inner.message(text)

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        self.inner.update(counters, shards)
        now = time.time()
        if now - self._last >= self.interval_s:
            self._last = now
            self.write(counters, shards, "running")

    def write(self, counters: RunCounters, shards: list[ShardState], status: str) -> None:
        """Write the textfile; a failure is reported once and never stops the ingest."""
        loaded = counters.extra.get("loaded_before", 0) + counters.inserted
        try:
            self._write(counters, shards, status, loaded)
        except OSError as exc:
            if not self.failed:
                self.failed = True
                self.inner.message(f"warning: cannot write --metrics-file {self.path}: {exc}")

    def _write(
        self, counters: RunCounters, shards: list[ShardState], status: str, loaded: int
    ) -> None:
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
    # Pages make millions of short-lived objects and no reference cycles: collect the young
    # generation less often and leave start-up objects out of every scan.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    clock = MonotonicClock()
    counters = RunCounters()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is None:
            reporter.message(f"no DATABASE_URL: using embedded PostgreSQL in {settings.data_dir}")
            pgdata = embedded_pgdata(settings.data_dir)
            dsn = await stack.enter_async_context(EmbeddedPostgres(pgdata))
        else:
            dsn = settings.database_url
        api_url, api_key = settings.api_url, settings.api_key
        delivery = stack.enter_context(DeliveryLog(settings.data_dir / "delivery.jsonl"))
        sink = await stack.enter_async_context(
            PostgresSink(dsn, loaders=settings.loaders, on_delivery=delivery)
        )
        await sink.try_lock()
        if api_url is None:
            api_key = api_key or DEMO_API_KEY
            api_url = await stack.enter_async_context(
                bundled_sandbox(
                    api_key,
                    events=settings.sandbox_events,
                    extra_args=("--time-scale", f"{settings.sandbox_time_scale:g}"),
                )
            )
            reporter.message(
                f"no DATASYNC_API_URL: started the bundled sandbox ({settings.sandbox_events:,} "
                f"events, time scale {settings.sandbox_time_scale:g}) at {api_url}"
            )
        http = await stack.enter_async_context(
            Http(api_url, api_key, timeout_s=settings.request_timeout_s)
        )
        source = DataSyncSource(http, clock, counters, source_options(settings))
        tap = MetricsTap(reporter, settings.metrics_file) if settings.metrics_file else None
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        runs: list[Run] = []

        def on_signal(name: str) -> None:
            if runs and not runs[0].stop.is_set():
                runs[0].request_stop(name)  # graceful: what is queued commits
            elif main_task is not None:
                main_task.cancel()  # a second signal (or one before the run): stop now

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, signal.Signals(sig).name)
        try:
            outcome = await run_ingest(
                source,
                sink,
                sink,
                tap or reporter,
                clock,
                pipeline_options(settings),
                counters=counters,
                on_run=runs.append,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if tap is not None:
            tap.write(counters, outcome.shards, outcome.status)
    return outcome, time.monotonic() - started
