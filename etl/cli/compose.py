"""The composition root of `etl ingest`: opens every part, runs the pipeline, records the run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.cli import signals
from etl.cli.bundled import bundled_sandbox
from etl.cli.db import embedded_pgdata
from etl.clock import MonotonicClock
from etl.delivery import DeliveryLog
from etl.errors import EtlError
from etl.fmt import human_duration
from etl.identity import SourceIdentity, api_label, key_id
from etl.metrics import write_metrics
from etl.models import Reporter, RunCounters, ShardState
from etl.pg import wait_until_up
from etl.pipeline import Outcome, Run
from etl.sandbox.config import DEMO_API_KEY
from etl.sandbox.databox.config import DATABOX_DEMO_KEY, DATABOX_PREFIX
from etl.settings import PushSettings, Settings
from etl.sharedrate import KeyBudget, key_fingerprint
from etl.sink.budget import PgBudgetStore
from etl.sink.embedded import EmbeddedPostgres
from etl.sink.outage import quiet_loop_errors
from etl.sink.postgres import PostgresSink
from etl.source.datasync import DataSyncSource
from etl.source.http import Http
from etl.wiring import pipeline_options, run_ingest, source_options

if TYPE_CHECKING:
    from etl.push.pusher import PushCounters


def summary(outcome: Outcome, elapsed_s: float) -> str:
    c = outcome.counters
    total = f"/{outcome.expected_total:,}" if outcome.expected_total else ""
    head = {
        "succeeded": f"ingest complete ({outcome.reason})" if outcome.reason else "ingest complete",
        "partial": f"ingest stopped ({outcome.reason or 'unfinished'}); rerun to resume",
        "failed": f"ingest failed: {outcome.error}",
        "incomplete": f"ingest INCOMPLETE: {outcome.reason}",
    }[outcome.status]
    return (
        f"{head} ◆ {outcome.loaded_total:,}{total} events in the table ◆ "
        f"received {c.received:,} = {c.inserted:,} new + {c.duplicates:,} duplicates + "
        f"{c.quarantined:,} quarantined + {c.out_of_range:,} out of shard range"
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
            ("refreshed", "replaced by the source's differing copy"),
        )
        if c.extra.get(key)
    ]
    return "".join(f", {p}" for p in parts)


def summary_fields(outcome: Outcome, elapsed_s: float) -> dict[str, object]:
    """The summary's figures, as fields of its JSON log line."""
    c = outcome.counters
    return {
        "status": outcome.status,
        "loaded": outcome.loaded_total,
        "expected": outcome.expected_total,
        "received": c.received,  # = inserted + duplicates + quarantined + out_of_range
        "inserted": c.inserted,
        "duplicates": c.duplicates,
        "quarantined": c.quarantined,
        "out_of_range": c.out_of_range,
        "requests": c.requests,
        "retries": c.retries,
        "rate_limited": c.rate_limited,
        "cursor_resets": c.cursor_resets,
        "elapsed_s": round(elapsed_s, 3),
    }


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


class StoppedAtStartup(Exception):
    """A signal arrived before the run began: nothing was loaded, nothing needs saving."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class Stopper:
    """Turns SIGINT/SIGTERM into a stop: during start-up, cancel it (nothing is loaded yet);
    during the run, a graceful stop; a second signal during the run stops at once."""

    def __init__(self, main_task: asyncio.Task[object] | None) -> None:
        self.main_task = main_task
        self.run: Run | None = None
        self.startup_signal: str | None = None
        # the run's stop event, made before the run: the sink's wait for a database in an
        # outage ends on it too
        self.stop = asyncio.Event()

    def __call__(self, name: str) -> None:
        if self.run is None:
            if self.startup_signal is None and self.main_task is not None:
                self.startup_signal = name
                self.main_task.cancel()
            return
        if self.run.stop.is_set() and self.main_task is not None:
            self.main_task.cancel()  # a second signal: stop now (what is committed stays)
        self.run.request_stop(name)


async def ingest_main(
    settings: Settings, reporter: Reporter, push: PushSettings | None = None
) -> tuple[Outcome, float]:
    """Run one ingest; SIGINT/SIGTERM are handled from the first line (see signals).

    With ``push``, the outbox is drained into Databox as batches commit, and the rest once
    the load has ended (the push's errors are raised after the run is recorded)."""
    tune_gc()
    stopper = Stopper(asyncio.current_task())
    signals.listen(asyncio.get_running_loop(), stopper)
    quiet_loop_errors(asyncio.get_running_loop())
    try:
        return await ingest_one(settings, reporter, stopper, push)
    except asyncio.CancelledError:
        if stopper.run is None and stopper.startup_signal is not None:
            raise StoppedAtStartup(stopper.startup_signal) from None
        raise
    finally:
        signals.stop_listening()


def tune_gc() -> None:
    """Pages make millions of short-lived objects and no reference cycles: collect the young
    generation less often and leave start-up objects out of every scan (once per process)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def ingest_one(
    settings: Settings, reporter: Reporter, stopper: Stopper, push: PushSettings | None
) -> tuple[Outcome, float]:
    """One ingest with its parts opened and closed; signals are the caller's (``stopper``)."""
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
            if settings.db_wait_s > 0:
                await wait_until_up(dsn, within_s=settings.db_wait_s, on_wait=reporter.message)
        api_url, api_key = settings.api_url, settings.api_key
        delivery = stack.enter_context(DeliveryLog(settings.data_dir / "delivery.jsonl"))
        sink = await stack.enter_async_context(
            PostgresSink(
                dsn,
                stream=DataSyncSource.stream,
                loaders=settings.loaders,
                on_delivery=delivery,
                outage_s=settings.db_outage_s,
                stop=stopper.stop,
                share=settings.share,
            )
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
            if push is not None:
                root = api_url.removesuffix("/api/v1") + DATABOX_PREFIX
                push = push.bundled(root, DATABOX_DEMO_KEY)
        http = await stack.enter_async_context(
            Http(
                api_url,
                api_key,
                timeout_s=settings.request_timeout_s,
                max_body_bytes=int(settings.max_response_mb * 2**20),
                connections=2 * settings.max_in_flight + 8,  # both lanes at their cap
            )
        )
        budget = await _shared_budget(settings, dsn, api_url, api_key, stack)
        source = DataSyncSource(
            http,
            clock,
            counters,
            source_options(settings),
            log=reporter.message,
            log_interval_s=settings.progress_interval_s,
            budget=budget,
        )
        tap = MetricsTap(reporter, settings.metrics_file) if settings.metrics_file else None
        follow = asyncio.Event()
        pushing = None if push is None else start_push(dsn, push, clock, delivery, reporter, follow)
        if pushing is not None:
            stack.push_async_callback(_cancel, pushing)

        runs: list[Run] = []

        def on_run(run: Run) -> None:
            stopper.run = run
            runs.append(run)

        try:
            outcome = await run_ingest(
                source,
                sink,
                sink,
                tap or reporter,
                clock,
                pipeline_options(settings),
                counters=counters,
                on_run=on_run,
                stop=stopper.stop,
                identity=SourceIdentity(api_label(settings.api_url), key_id(api_key)),
            )
        except BaseException as exc:  # the metrics say how it ended, whatever happened
            if tap is not None:
                ended = "partial" if isinstance(exc, asyncio.CancelledError) else "failed"
                tap.write(counters, runs[0].shards if runs else [], ended)
            raise
        if tap is not None:
            tap.write(counters, outcome.shards, outcome.status)
        if pushing is not None:
            follow.set()
            pushed = await pushing
            reporter.message(
                f"pushed {pushed.records:,} records in {pushed.chunks:,} requests; verified "
                f"{pushed.verified:,} ingestions ({pushed.rejected:,} records rejected)"
            )
    return outcome, time.monotonic() - started


async def _shared_budget(
    settings: Settings, dsn: str, api_url: str, api_key: str, stack: contextlib.AsyncExitStack
) -> KeyBudget | None:
    """The key's limiters in PostgreSQL, shared with the other tasks on the key (task mode
    or ``--shared-budget``); closed (what was learnt handed in) when the run ends."""
    if not settings.uses_shared_budget:
        return None
    store = PgBudgetStore(dsn)
    stack.push_async_callback(store.close)
    with contextlib.suppress(EtlError):
        await store.prune()
    budget = KeyBudget(store, key_fingerprint(api_url, api_key))
    stack.push_async_callback(budget.close)
    return budget


def start_push(
    dsn: str,
    push: PushSettings,
    clock: MonotonicClock,
    delivery: DeliveryLog,
    reporter: Reporter,
    follow: asyncio.Event,
) -> asyncio.Task[PushCounters]:
    """The pusher as a task beside the load: it drains until ``follow`` is set."""
    from etl.push.run import push_main

    return asyncio.create_task(
        push_main(
            dsn,
            push,
            clock,
            on_delivery=lambda d: delivery.write_line(d.to_json()),
            on_message=reporter.message,
            follow=follow,
        )
    )


async def _cancel(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, EtlError):
            await task
