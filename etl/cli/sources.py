"""`etl sources`, `etl discover`, `etl check`, `etl auth` and `etl sync`: declarative sources.

    etl sources                  what is available (built-in, spec files, entry points)
    etl discover github          each stream's table, key, cursor, columns; the config it reads
    etl check github             config and credentials in seconds, nothing loaded
    etl auth github              sign in at a terminal (OAuth2 device flow); tokens stored
    etl sync github              every stream into its own table, exactly once, resumable

A SOURCE is a name (`etl sources`) or the path of a spec file. Exit codes as `etl ingest`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import database, fail
from etl.cli.options import AsJson, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, ExitCode

if TYPE_CHECKING:
    from etl.models import Clock
    from etl.rest.spec import SourceSpec
    from etl.rest.sync import StreamResult
    from etl.source.retry import RetryPolicy

SourceArg = Annotated[str, typer.Argument(help="A source name (see `etl sources`) or a spec file.")]


def _spec(source: str) -> SourceSpec:
    from etl.sources.registry import find

    return find(source)


@app.command()
def sources(as_json: AsJson = False) -> None:
    """List the sources available and their streams."""
    from etl.sources.registry import available

    try:
        found = available()
    except EtlError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps([{**asdict(s), "streams": list(s.streams)} for s in found]))
        return
    for s in found:
        typer.echo(f"{s.name:<12} {s.kind:<7} {', '.join(s.streams) or '-':<28} {s.origin}")


@app.command()
def discover(source: SourceArg, as_json: AsJson = False) -> None:
    """Each stream's table, primary key, cursor and columns, and the config the source reads."""
    try:
        spec = _spec(source)
    except EtlError as exc:
        raise fail(exc) from None
    doc = {
        "source": spec.name,
        "description": spec.description,
        "auth": spec.auth.type,
        "config": [
            {"name": p.name, "env": p.env, "default": None if p.secret else p.default,
             "required": p.required, "secret": p.secret}
            for p in spec.config
        ],
        "streams": [
            {
                "name": s.name,
                "table": s.table,
                "primary_key": list(s.primary_key),
                "cursor": s.incremental.cursor_field if s.incremental else None,
                "columns": [
                    {"name": c.name, "type": c.type, "from": ".".join(c.source)}
                    for c in s.columns
                ],
            }
            for s in spec.streams
        ],
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(doc))
        return
    typer.echo(f"{spec.name}: {spec.description} (auth: {spec.auth.type})")
    for p in spec.config:
        shown = "(secret)" if p.secret else (p.default or "")
        typer.echo(f"  config {p.name:<14} env {p.env or '-':<22} {shown}")
    for s in spec.streams:
        cursor = f", cursor {s.incremental.cursor_field}" if s.incremental else ""
        typer.echo(f"stream {s.name} -> table {s.table} (key {', '.join(s.primary_key)}{cursor})")
        for c in s.columns:
            typer.echo(f"  {c.name:<18} {c.type:<10} from {'.'.join(c.source)}")


def _wall() -> float:
    return time.time()


async def _check_main(spec: SourceSpec, dsn: str) -> str:
    from etl.clock import MonotonicClock
    from etl.rest.client import RestClient
    from etl.rest.paginate import Request
    from etl.rest.sync import first_request
    from etl.rest.wiring import build_auth
    from etl.sink.tokens import PgTokenStore
    from etl.source.http import Http
    from etl.source.retry import RetryPolicy

    started = time.monotonic()
    async with Http(spec.base_url, "", timeout_s=10.0) as http:
        auth = build_auth(spec, http, PgTokenStore(dsn), _wall)
        client = RestClient(
            http, auth, clock=MonotonicClock(), wall=_wall, retry=RetryPolicy(max_attempts=2)
        )
        stream = spec.streams[0]
        if spec.check_path:
            request = Request(spec.base_url + spec.check_path)
        else:
            request = first_request(stream, spec.base_url, None)
        await client.fetch(stream, request)
    took = time.monotonic() - started
    return f"GET {request.url.removeprefix(spec.base_url)} answered in {took:.2f} s"


@app.command()
def check(source: SourceArg, data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Validate the source's spec, config and credentials with one request; load nothing."""
    from etl.rest.load import resolve

    try:
        spec = resolve(_spec(source), os.environ)

        async def main() -> str:
            async with database(database_url, data_dir) as dsn:
                return await _check_main(spec, dsn)

        detail = asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None
    typer.echo(f"ok: {spec.name} ({detail}; auth: {spec.auth.type})")


@app.command()
def auth(source: SourceArg, data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Sign in at a terminal (OAuth2 device flow); the tokens go to the database, unprinted."""
    from etl.rest.load import resolve

    try:
        spec = resolve(_spec(source), os.environ)
        if spec.auth.type != "oauth2_refresh_token" or not spec.auth.device_url:
            raise _no_device_flow(spec)

        async def main() -> None:
            from etl.auth import device
            from etl.clock import MonotonicClock
            from etl.rest.wiring import token_endpoint
            from etl.sink.tokens import PgTokenStore
            from etl.source.http import Http

            async with database(database_url, data_dir) as dsn, Http(spec.base_url, "") as http:
                endpoint = token_endpoint(spec, http)
                code = await device.start(endpoint, spec.auth.device_url or "", spec.auth.scope)
                typer.echo(f"Open {code.verification_uri} and enter the code {code.user_code}")
                typer.echo(f"(waiting up to {code.expires_in / 60:.0f} min)", err=True)
                tokens = await device.poll(endpoint, code, sleep=MonotonicClock().sleep, wall=_wall)
                await PgTokenStore(dsn).save(spec.name, tokens)

        asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.PARTIAL) from None
    typer.echo(f"signed in to {spec.name}; the tokens are stored in the database (never printed)")


def _no_device_flow(spec: SourceSpec) -> EtlError:
    return ConfigError(
        f"{spec.name} authenticates with {spec.auth.type}: there is nothing to sign in to "
        "(`etl auth` is for OAuth2 sources with a device_url)"
    )


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
    wall: Callable[[], float] = _wall,
    retry: RetryPolicy | None = None,
) -> list[StreamResult]:
    """Every selected stream of ``spec`` into ``dsn``, one after the other (the one wiring
    of a declarative run: the command and the tests use it)."""
    from etl.clock import MonotonicClock
    from etl.rest.client import RestClient
    from etl.rest.sync import sync_stream
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
    store = StreamStore(dsn, spec.name)
    await store.open(selected)
    results = []
    try:
        async with Http(spec.base_url, "") as http:
            auth_ = build_auth(spec, http, PgTokenStore(dsn), wall)
            client = RestClient(
                http, auth_, clock=clock or MonotonicClock(), wall=wall, retry=retry
            )
            for stream in selected:
                result = await sync_stream(
                    client, store, stream, spec.base_url, should_stop=should_stop
                )
                results.append(result)
                if result.status == "partial":
                    break
    finally:
        await store.close()
    return results


@app.command()
def sync(
    source: SourceArg,
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    stream: Streams = None,
    max_runtime: MaxRuntime = None,
) -> None:
    """Load every stream of a declarative source into its own table, exactly once."""
    from etl.rest.load import resolve

    deadline = time.monotonic() + max_runtime if max_runtime else None
    try:
        spec = resolve(_spec(source), os.environ)

        async def main() -> list[StreamResult]:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)

            def should_stop() -> bool:
                return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

            async with database(database_url, data_dir) as dsn:
                return await sync_source(spec, dsn, stream, should_stop=should_stop)

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
