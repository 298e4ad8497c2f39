"""Which server a declarative source talks to: the configured one, or the bundled sandbox.

A spec parameter with ``sandbox: /path`` and no value (``github.yaml``'s ``api_url``)
makes `etl sync`/`etl check` start the bundled sandbox (as `etl ingest` does without
DATASYNC_API_URL) and point the parameter into it. The sandbox lives for the command only,
so its OAuth2 tokens do too: the command signs in to it with the device flow by itself
(approving its own code, as the person would) and keeps the tokens in memory, never in the
database next to real ones.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator

import typer

from etl.auth.tokens import MemoryTokenStore, TokenStore
from etl.rest.load import resolve, sandbox_env, sandbox_needed
from etl.rest.spec import SourceSpec

SANDBOX_EVENTS = 1_000  # the DataSync side of the bundled sandbox: small, it is not used
SANDBOX_TIME_SCALE = "10"  # device-flow polling every 0.5 s instead of 5 s


def wall() -> float:
    return time.time()


@contextlib.asynccontextmanager
async def target(raw: SourceSpec) -> AsyncIterator[tuple[SourceSpec, TokenStore | None]]:
    """The resolved spec, and the token store to use instead of PostgreSQL's (or None)."""
    if not sandbox_needed(raw, os.environ):
        yield resolve(raw, os.environ), None
        return
    from etl.cli.bundled import bundled_sandbox
    from etl.sandbox.config import DEMO_API_KEY

    async with bundled_sandbox(
        DEMO_API_KEY, events=SANDBOX_EVENTS, extra_args=("--time-scale", SANDBOX_TIME_SCALE)
    ) as api:
        root = api.removesuffix("/api/v1")
        spec = resolve(raw, sandbox_env(raw, os.environ, root))
        unset = ", ".join(p.env or p.name for p in raw.config if p.sandbox is not None)
        typer.echo(f"no {unset}: started the bundled sandbox at {root}", err=True)
        tokens = MemoryTokenStore()
        if spec.auth.type == "oauth2_refresh_token" and spec.auth.device_url:
            await sign_in_to_sandbox(spec, tokens)
        yield spec, tokens


async def sign_in_to_sandbox(spec: SourceSpec, tokens: TokenStore) -> None:
    from etl.auth import device
    from etl.clock import MonotonicClock
    from etl.rest.wiring import token_endpoint
    from etl.source.http import Http

    async with Http(spec.base_url, "") as http:
        endpoint = token_endpoint(spec, http)
        code = await device.start(endpoint, spec.auth.device_url or "", spec.auth.scope)
        await http.request("GET", code.verification_uri, params={"user_code": code.user_code})
        await tokens.save(
            spec.name, await device.poll(endpoint, code, sleep=MonotonicClock().sleep, wall=wall)
        )
