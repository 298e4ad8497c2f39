"""`etl check` and `etl auth`: a source's config and credentials, and signing in.

    etl check github             config and credentials with one request, nothing loaded
    etl auth github              sign in at a terminal (OAuth2 device flow); tokens stored

Exit codes as `etl ingest` (2 config, 4 credentials refused, 5 API, 6 database).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import typer

from etl.cli.db import database, fail
from etl.cli.options import DatabaseUrl, DataDir
from etl.cli.root import app
from etl.cli.sources import SourceArg
from etl.cli.target import target, wall
from etl.errors import ConfigError, EtlError, ExitCode
from etl.rest.load import resolve, sandbox_needed
from etl.sources.registry import find

if TYPE_CHECKING:
    from etl.auth.tokens import TokenStore
    from etl.rest.spec import SourceSpec


async def _check_main(spec: SourceSpec, dsn: str, tokens: TokenStore | None) -> str:
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
        auth = build_auth(spec, http, tokens or PgTokenStore(dsn), wall)
        client = RestClient(
            http, auth, clock=MonotonicClock(), wall=wall, retry=RetryPolicy(max_attempts=2)
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
    try:
        raw = find(source)

        async def main() -> str:
            async with target(raw) as (spec, tokens), database(database_url, data_dir) as dsn:
                return await _check_main(spec, dsn, tokens)

        detail = asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None
    typer.echo(f"ok: {raw.name} ({detail}; auth: {raw.auth.type})")


@app.command()
def auth(source: SourceArg, data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Sign in at a terminal (OAuth2 device flow); the tokens go to the database, unprinted."""
    try:
        raw = find(source)
        if sandbox_needed(raw, os.environ):
            raise ConfigError(
                f"set {', '.join(p.env or p.name for p in raw.config if p.sandbox)}: "
                f"without them `etl sync {raw.name}` signs in to the bundled sandbox by itself"
            )
        spec = resolve(raw, os.environ)
        if spec.auth.type != "oauth2_refresh_token" or not spec.auth.device_url:
            raise _no_device_flow(spec)

        async def main() -> None:
            from etl.auth import device
            from etl.clock import MonotonicClock
            from etl.rest.wiring import token_endpoint
            from etl.sink.tokens import PgTokenStore
            from etl.source.http import Http

            async with database(database_url, data_dir) as dsn, Http(spec.base_url, "") as http:
                store = PgTokenStore(dsn)
                store.check_key()  # a key that cannot be had fails before the person signs in
                endpoint = token_endpoint(spec, http)
                code = await device.start(endpoint, spec.auth.device_url or "", spec.auth.scope)
                typer.echo(f"Open {code.verification_uri} and enter the code {code.user_code}")
                typer.echo(f"(waiting up to {code.expires_in / 60:.0f} min)", err=True)
                tokens = await device.poll(endpoint, code, sleep=MonotonicClock().sleep, wall=wall)
                await store.save(spec.name, tokens)

        asyncio.run(main())
    except EtlError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.PARTIAL) from None
    typer.echo(
        f"signed in to {spec.name}; the tokens are stored in the database, sealed (never printed)"
    )


def _no_device_flow(spec: SourceSpec) -> EtlError:
    return ConfigError(
        f"{spec.name} authenticates with {spec.auth.type}: there is nothing to sign in to "
        "(`etl auth` is for OAuth2 sources with a device_url)"
    )
