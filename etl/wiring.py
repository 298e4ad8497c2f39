"""One wiring of a run, shared by `etl ingest` (``cli/compose.py``) and the tests.

``run_ingest`` is the sequence every ingest goes through once its parts are open: the
source starts, the run is recorded, the pipeline runs, and the run's end is recorded
whatever happens (failed on an error, partial on a second signal). The parts arrive as
the Protocols of ``etl.models``; opening them (PostgreSQL, the sandbox, HTTP) and taking
the lock are the caller's. ``pipeline_options``/``source_options`` turn ``Settings`` into
the options of each part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from etl import planner
from etl.errors import EtlError, LockHeld, StoppedInOutage
from etl.identity import SourceIdentity
from etl.models import Clock, Destination, Reporter, RunCounters, Source, StateStore
from etl.pipeline import Outcome, PipelineOptions, Run
from etl.settings import Settings
from etl.source.datasync import SourceOptions


def pipeline_options(settings: Settings) -> PipelineOptions:
    return PipelineOptions(
        page_size=settings.page_size,
        shards=settings.shards,
        span_ms=int(settings.span_days * planner.DAY_MS),
        overlap_ms=settings.overlap_ms,
        loaders=settings.loaders,
        queue_batches=settings.queue_batches,
        batch_size=settings.batch_size,
        max_runtime_s=settings.max_runtime_s,
        rereads=settings.incomplete_rereads,
        full_refresh=settings.full_refresh,
        max_event_chars=int(settings.max_event_kb * 1024),
        max_in_flight=settings.max_in_flight,
        max_latency_s=settings.request_timeout_s / 2,
        share=settings.share,
    )


def source_options(settings: Settings) -> SourceOptions:
    strategy = settings.strategy
    if settings.feed_concurrency == 0 and strategy == "auto":
        strategy = "events"
    if settings.events_concurrency == 0 and strategy == "auto":
        strategy = "feed"
    return SourceOptions(
        strategy=strategy,
        events_concurrency=settings.events_concurrency,
        feed_concurrency=settings.feed_concurrency,
        feed_rate_per_s=settings.feed_rate_per_s,
        feed_window_s=settings.effective_feed_window_s,
        feed_learn_window=settings.feed_window_s is None,  # a window given is taken as known
        max_attempts=settings.max_attempts,
    )


async def run_ingest(
    source: Source,
    destination: Destination,
    store: StateStore,
    reporter: Reporter,
    clock: Clock,
    options: PipelineOptions,
    *,
    counters: RunCounters,
    on_run: Callable[[Run], None] | None = None,
    stop: asyncio.Event | None = None,
    identity: SourceIdentity | None = None,
) -> Outcome:
    """Start ``source``, record a run in ``store``, run the pipeline, record how it ended.

    ``on_run`` sees the ``Run`` before it executes (to wire signals to ``request_stop``).
    An exception still ends the run in ``store`` (failed; partial when cancelled by a second
    signal) and is then re-raised. ``stop`` is the run's stop event (e.g. also the sink's,
    so that a stop ends its wait for a database in an outage). A lock lost to another run
    (``LockHeld`` during the run) is re-raised without writing anything more. ``identity``
    (api, key id) turns on the dataset checks of ``etl.identity``.
    """
    reporter.message(await source.start())
    await store.start_run(source.strategy_used)
    run = Run(
        source,
        destination,
        store,
        reporter,
        clock,
        options,
        counters=counters,
        stop=stop,
        identity=identity,
    )
    if on_run is not None:
        on_run(run)
    try:
        outcome = await run.execute()
    except asyncio.CancelledError:
        with contextlib.suppress(EtlError):
            await store.finish_run("partial", counters, "stopped at once by a second signal")
        raise
    except LockHeld:
        raise  # the lock was lost in an outage and another run has it: write nothing
    except EtlError as exc:  # its message says what happened, in words
        with contextlib.suppress(EtlError):
            await store.finish_run("failed", counters, str(exc))
        raise
    except BaseException as exc:
        with contextlib.suppress(EtlError):
            await store.finish_run("failed", counters, f"internal error: {exc!r}")
        raise
    error = f"{outcome.error}" if outcome.error else (outcome.reason or None)
    with contextlib.suppress(StoppedInOutage):  # stopped while the database is down
        await store.finish_run(outcome.status, counters, error)
    return outcome
