"""`etl serve`: the HTTP API and the dashboard over the loaded data (see etl/serve/)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import typer

from etl.cli.options import ApiKey, ApiUrl, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, ExitCode

_URL = re.compile(r"http://[^ ]+")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, client_key: str | None) -> str:
    """The message to print about who may connect; ConfigError for an open bind with no key."""
    if client_key:
        return f"clients must send X-API-Key (ETL_SERVE_API_KEY) · listening on {host}"
    if not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a client API key: set ETL_SERVE_API_KEY, "
            "or use --host 127.0.0.1"
        )
    return f"no ETL_SERVE_API_KEY: serving on loopback only ({host}), no key required"


@app.command()
def serve(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = "",
    host: Annotated[str, typer.Option(envvar="ETL_SERVE_HOST", help="Address to bind.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(envvar="ETL_SERVE_PORT", min=0, max=65535, help="Port (0: any free).")
    ] = 8000,
    client_key: Annotated[
        str | None,
        typer.Option(
            "--client-key",
            envvar="ETL_SERVE_API_KEY",
            help="Key clients must send (X-API-Key or Bearer). Unset: loopback only.",
            show_default=False,
        ),
    ] = None,
    statement_timeout_ms: Annotated[
        int, typer.Option(min=100, help="Longest any query may run, in ms.")
    ] = 2000,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="ETL_SERVE_WORKERS",
            min=1,
            max=64,
            help="Server processes on the port (SO_REUSEPORT). Default: one per CPU with "
            "DATABASE_URL, 1 with the embedded PostgreSQL.",
            show_default=False,
        ),
    ] = None,
    thresholds_url: Annotated[
        str | None,
        typer.Option(
            "--thresholds-url",
            envvar="ETL_THRESHOLDS_URL",
            help="Benchmark service answering /anomalies' threshold rules as JSON.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) and the dashboard at /."""
    import os
    from pathlib import Path

    from aiohttp import web

    from etl.pg import RecoveringPool
    from etl.serve.app import ServeContext, make_app, warm
    from etl.serve.peers import Peers

    try:
        banner = check_bind(host, client_key)
        if workers is not None and workers > 1 and database_url is None:
            raise ConfigError("--workers > 1 needs DATABASE_URL (one embedded PostgreSQL each)")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.CONFIG) from None
    n = workers or (max(1, os.cpu_count() or 1) if database_url else 1)

    async def api_check() -> tuple[str, str]:
        from etl.cli.health import api_check as check

        result = await check(api_url, api_key)
        return ("ok" if result.ok else "error"), result.detail

    async def build(peers: Peers | None = None) -> web.Application:
        ctx = ServeContext(
            db=RecoveringPool("postgresql://unset", statement_timeout_ms=statement_timeout_ms),
            api_check=api_check if api_url else None,
            dataset={"source": "datasync", "streams": ["events"]},
            client_api_key=client_key,
            thresholds_url=thresholds_url,
            peers=peers,
        )
        application = make_app(ctx)

        async def database_ctx(_: web.Application) -> AsyncIterator[None]:
            from etl.cli.db import database
            from etl.sink.schema import migrate

            async with database(database_url, data_dir) as dsn:
                ctx.db = RecoveringPool(dsn, statement_timeout_ms=statement_timeout_ms)
                try:
                    async with ctx.db.connection() as conn, conn.transaction():
                        # a migration builds indexes over the events: not a request, so not
                        # under the requests' statement timeout (it was cancelled at 2 s)
                        await conn.execute("SET LOCAL statement_timeout = 0")
                        await migrate(conn)
                except EtlError as exc:  # serve anyway: 503 until the database is back
                    typer.echo(f"warning: {exc}", err=True)
                warming = asyncio.create_task(warm(ctx))  # in-memory stores, in the background
                yield
                warming.cancel()

        application.cleanup_ctx.append(database_ctx)
        return application

    def listening(text: str) -> None:
        """The line a supervisor (or a test) waits for: printed once the socket listens."""
        typer.echo(
            f"etl serve · listening on {' '.join(_URL.findall(text))}"
            f"{f' · {n} workers' if n > 1 else ''} · {banner}",
            err=True,
        )

    def serve_one(k: int, port: int, shared: Path, on_listening: Callable[[str], None]) -> None:
        web.run_app(
            build(Peers(shared, k)),
            host=host,
            port=port,
            reuse_port=True,
            shutdown_timeout=10,
            access_log=None,
            print=on_listening,
            handle_signals=True,
        )

    try:
        if n > 1:
            from etl.cli.serve_workers import supervise

            code = supervise(n, host, port, serve_one, listening)
            if code:
                raise typer.Exit(ExitCode.INTERNAL)  # a worker died
            return
        web.run_app(
            build(),
            host=host,
            port=port,
            shutdown_timeout=10,  # SIGTERM: stop accepting, let requests in flight finish
            access_log=None,
            print=listening,
        )
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(ExitCode.CONFIG) from None
