"""`etl sync`: every stream of a declarative source into its own table, exactly once.

``sync_source`` is the one wiring of a declarative run (the command and the tests use it):
the stream store (PostgreSQL, the source's lock), HTTP, the source's auth and the request
loop with the budget its streams share (``etl.rest.budget``), then every selected stream
at once, each on the pipeline (``etl.cli.pipeline_sync.sync_rest_stream``: one cursor
chain per stream, its pages in order); a child stream (``etl.rest.parents``) starts when
its parent's run has ended, so it reads the parent's rows this run wrote. SIGINT/SIGTERM or
``--max-runtime`` stop after the page being committed (exit 3); the next run resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli import signals
from etl.cli.db import database, fail
from etl.cli.options import DatabaseUrl, DataDir
from etl.cli.root import app
from etl.cli.sources import SourceArg
from etl.cli.target import target, wall
from etl.errors import ConfigError, EtlError, ExitCode
from etl.rest.spec import SourceSpec, StreamSpec
from etl.sources.registry import find_source

if TYPE_CHECKING:
    from pathlib import Path

    from etl.auth.tokens import TokenStore
    from etl.models import Clock, Source
    from etl.rest.parents import Parents
    from etl.rest.sync import StreamResult
    from etl.source.retry import RetryPolicy


Streams = Annotated[
    list[str] | None, typer.Option("--stream", "-s", help="Only these streams (repeatable).")
]
MaxRuntime = Annotated[
    float | None,
    typer.Option("--max-runtime", envvar="ETL_MAX_RUNTIME", min=1, help="Seconds; then stop."),
]


async def sync_source(
    spec: SourceSpec,
    dsn: str,
    names: list[str] | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Clock | None = None,
    wall: Callable[[], float] = wall,
    retry: RetryPolicy | None = None,
    tokens: TokenStore | None = None,
    stop: asyncio.Event | None = None,
) -> list[StreamResult]:
    """Every selected stream of ``spec`` into ``dsn``, concurrently under one shared
    request budget (the one wiring of a declarative run: the command and the tests use
    it). Each stream ends on its own (a failed one does not cancel the others mid-page);
    then the first stream's error, in the spec's order, is raised. ``stop`` (or
    ``should_stop``, asked before each page after a chain's first) ends every stream after
    the pages being committed."""
    from etl.cli.pipeline_sync import sync_rest_stream
    from etl.clock import MonotonicClock
    from etl.rest.client import RestClient
    from etl.rest.wiring import build_auth
    from etl.sink.streams import StreamStore
    from etl.sink.tokens import PgTokenStore
    from etl.source.http import Http

    unknown = set(names or ()) - {s.name for s in spec.streams}
    if unknown:
        raise ConfigError(
            f"{spec.name} has no stream {', '.join(sorted(unknown))} "
            f"(streams: {', '.join(s.name for s in spec.streams)})"
        )
    selected = [s for s in spec.streams if not names or s.name in names]
    store = StreamStore(dsn, spec.name, writers=len(selected))
    await store.open(selected)
    try:
        async with Http(spec.base_url, "") as http:
            auth_ = build_auth(spec, http, tokens or PgTokenStore(dsn), wall)
            clock = clock or MonotonicClock()
            client = RestClient(http, auth_, clock=clock, wall=wall, retry=retry)
            stopping = stop or asyncio.Event()
            finished = {s.name: asyncio.Event() for s in selected}

            async def one(s: StreamSpec) -> tuple[StreamResult, Exception | None]:
                parents = None
                if s.parent is not None:  # after its parent's run: its rows as they now are
                    if s.parent.stream in finished:
                        await finished[s.parent.stream].wait()
                    parents = _parents(spec, s, dsn)
                try:
                    return await sync_rest_stream(
                        spec.name, s, client, spec.base_url, dsn,
                        stop=stopping, should_stop=should_stop, clock=clock, parents=parents,
                    )  # fmt: skip
                finally:
                    finished[s.name].set()

            done = await asyncio.gather(*(one(s) for s in selected))
    finally:
        await store.close()
    for _, error in done:
        if error is not None:
            raise error
    return [result for result, _ in done]


def _parents(spec: SourceSpec, child: StreamSpec, dsn: str) -> Parents:
    from etl.read.parents import TableParents

    assert child.parent is not None
    parent = spec.stream(child.parent.stream)
    assert parent is not None  # checked when the spec was loaded
    return TableParents(dsn, parent, child.parent.fields)


@app.command()
def sync(
    source: SourceArg,
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    stream: Streams = None,
    max_runtime: MaxRuntime = None,
) -> None:
    """Load every stream of a source (declarative, or a Python plugin) into its own table,
    exactly once."""
    deadline = time.monotonic() + max_runtime if max_runtime else None
    try:
        found = find_source(source)
        if not isinstance(found, SourceSpec):
            _sync_python(source, found, database_url, data_dir, max_runtime)
            return
        spec = found

        async def main() -> list[StreamResult]:
            stop = asyncio.Event()
            signals.listen(asyncio.get_running_loop(), lambda name: stop.set())

            def should_stop() -> bool:
                return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

            try:
                async with target(spec) as (res, tokens), database(database_url, data_dir) as dsn:
                    return await sync_source(
                        res, dsn, stream, should_stop=should_stop, tokens=tokens
                    )
            finally:
                signals.stop_listening()

        results = asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None
    for r in results:
        typer.echo(
            f"{spec.name}.{r.stream}: {r.status}, {r.rows} rows in {r.pages} pages "
            f"({r.inserted} new), {r.quarantined} quarantined"
        )
    if any(r.status == "partial" for r in results):
        raise typer.Exit(ExitCode.PARTIAL)


def _sync_python(
    name: str, source: Source, database_url: str | None, data_dir: Path, max_runtime: float | None
) -> None:
    """A Python source's stream on the pipeline (``etl.cli.pipeline_sync``); exit 3 when
    stopped by a signal or ``--max-runtime`` (the next run resumes)."""
    from dataclasses import replace

    from etl.cli.pipeline_sync import sync_python
    from etl.pipeline import PipelineOptions

    async def main() -> StreamResult:
        stop = asyncio.Event()
        signals.listen(asyncio.get_running_loop(), lambda signal_name: stop.set())
        options = replace(PipelineOptions(), max_runtime_s=max_runtime)
        try:
            async with database(database_url, data_dir) as dsn:
                return await sync_python(
                    name, source, dsn, options=options, stop=stop, say=typer.echo
                )
        finally:
            signals.stop_listening()

    r = asyncio.run(main())
    typer.echo(
        f"{name}.{r.stream}: {r.status}, {r.rows} rows in {r.pages} pages "
        f"({r.inserted} new), {r.quarantined} quarantined"
    )
    if r.status != "succeeded":
        raise typer.Exit(ExitCode.PARTIAL)
