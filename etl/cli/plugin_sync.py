"""`etl sync NAME` for a third-party Python source (``etl.sources.plugins``): its stream on
the same pipeline as DataSync, into its own table through ``etl.sink.stream_sink``.

``sync_python`` is the one wiring of such a run (the command and the tests use it): the
stream's sink (its table, shards, status; the source's lock, exit 7 when held), then
``etl.wiring.run_ingest`` (start the source, plan, fetch, load, record how it ended).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from etl.models import Clock, RunCounters, ShardState, Source
from etl.pipeline import PipelineOptions
from etl.rest.sync import StreamResult


class _Say:
    """The run's messages as lines; progress is in `etl status` (``stream_state``)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        return None

    def message(self, text: str) -> None:
        self._say(text)


async def sync_python(
    name: str,
    source: Source,
    dsn: str,
    *,
    options: PipelineOptions | None = None,
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> StreamResult:
    """``source``'s stream into its table, exactly once; how it went. A failed run raises
    its error (after recording it in ``stream_state``)."""
    from etl.clock import MonotonicClock
    from etl.sink.stream_sink import StreamSink
    from etl.wiring import run_ingest

    options = options or PipelineOptions()
    counters = RunCounters()
    async with StreamSink(dsn, name, source.stream, writers=options.loaders) as sink:
        await sink.try_lock()
        outcome = await run_ingest(
            source,
            sink,
            sink,
            _Say(say),
            clock or MonotonicClock(),
            options,
            counters=counters,
            stop=stop,
        )
    if outcome.error is not None:
        raise outcome.error
    status = "partial" if outcome.status == "partial" else outcome.status
    return StreamResult(
        source.stream.name,
        status=status,
        pages=counters.pages,
        rows=counters.received - counters.quarantined,
        inserted=counters.inserted,
        quarantined=counters.quarantined,
    )
