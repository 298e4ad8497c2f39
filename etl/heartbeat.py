"""The run's clockwork: progress to the reporter every tick, the counters to the state store
every ``heartbeat_s`` (proof of life for `etl status`/`health`), and ``--max-runtime``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from etl.aio import until_stopped
from etl.models import Clock, Reporter, RunCounters, ShardState, StateStore

if TYPE_CHECKING:
    from etl.pipeline import PipelineOptions


async def tick(
    *,
    clock: Clock,
    options: PipelineOptions,
    store: StateStore,
    reporter: Reporter,
    counters: RunCounters,
    shards: list[ShardState],
    finished: asyncio.Event,
    request_stop: Callable[[str], None],
) -> None:
    """Until ``finished``: report, beat, and ask for a stop once the deadline passed."""
    started = clock.now()
    last_beat = started
    deadline = options.max_runtime_s
    while not finished.is_set():
        ok, _ = await until_stopped(clock.sleep(options.tick_s), finished)
        if not ok:
            return
        now = clock.now()
        if deadline is not None and now - started >= deadline:
            request_stop(f"--max-runtime {deadline:g}s reached")
        reporter.update(counters, shards)
        if now - last_beat >= options.heartbeat_s:
            last_beat = now
            await store.heartbeat(counters)
