"""`etl sync`'s streams on the same pipeline as DataSync, each into its own table through
``etl.sink.stream_sink``, each through ``etl.wiring.run_ingest`` (start the source, plan,
fetch, load, record how it ended in ``stream_state``).

``sync_python``: a third-party Python source's stream (``etl.sources.plugins``; the
source's lock, exit 7 when held). ``sync_rest_stream``: one declared stream of a spec
(``etl.rest.stream``; the caller holds the source's lock and shares the client, and so the
request budget, between the source's streams).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from etl.models import Clock, RunCounters, ShardState, Source
from etl.pipeline import Outcome, PipelineOptions
from etl.rest.client import RestClient
from etl.rest.parents import Parents
from etl.rest.spec import StreamSpec
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
    return _result(source.stream.name, outcome)


def _result(name: str, outcome: Outcome, resets: int = 0) -> StreamResult:
    c = outcome.counters
    return StreamResult(
        name,
        status=outcome.status,
        pages=c.pages,
        rows=c.received - c.quarantined,
        inserted=c.inserted,
        quarantined=c.quarantined,
        resets=resets,
        error=str(outcome.error) if outcome.error is not None else None,
    )


async def sync_rest_stream(
    source_name: str,
    spec: StreamSpec,
    client: RestClient,
    base_url: str,
    dsn: str,
    *,
    stop: asyncio.Event,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Clock | None = None,
    options: PipelineOptions | None = None,
    parents: Parents | None = None,
) -> tuple[StreamResult, Exception | None]:
    """One declared stream of ``source_name`` on the pipeline: how it went, and its error
    (not raised: the source's other streams finish first). ``stop`` (a signal, or a
    ``should_stop``) ends every stream; this stream's own failure ends only this one.
    ``parents``: a child stream's parent rows (``etl.rest.parents``)."""
    from etl.clock import MonotonicClock
    from etl.rest.stream import RestLane, RestSource, RestTransform, rest_stream
    from etl.sink.stream_sink import StreamSink
    from etl.wiring import run_ingest

    options = options or PipelineOptions(loaders=1)
    transform = RestTransform(spec)
    stream = rest_stream(spec, transform)
    own = asyncio.Event()  # this run's stop: set by its own failure, or relayed from ``stop``
    relay = asyncio.ensure_future(_relay(stop, own))
    try:
        async with StreamSink(dsn, source_name, stream, spec=spec, lock=False, writers=1) as sink:
            transform.begin(await sink.mark())
            lane = RestLane(
                client, spec, base_url, transform,
                should_stop=should_stop, stop=stop.set, parents=parents,
            )  # fmt: skip
            outcome = await run_ingest(
                RestSource(stream, lane),
                sink,
                sink,
                _Say(lambda text: None),
                clock or MonotonicClock(),
                options,
                counters=RunCounters(),
                stop=own,
            )
    finally:
        relay.cancel()
    return _result(spec.name, outcome, lane.resets), outcome.error


async def _relay(stop: asyncio.Event, own: asyncio.Event) -> None:
    await stop.wait()
    own.set()
