"""The ``sandbox`` fixture: a real DataSync sandbox on 127.0.0.1, in the test's event loop.

    async def test_x(sandbox):
        sb = await sandbox(events=20_000, rate_limit=3)   # or sandbox(SandboxConfig(...))
        async with aiohttp.ClientSession(headers=sb.headers) as http:
            async with http.get(sb.base_url + "/events") as r: ...
        sb.clock.advance(61)                               # time moves only when told
        assert sb.dataset.ids() == [...]                   # the exact expected ids, API order
        assert sb.stats.rate_limited["events"] == 0

The default dataset is 20,000 events (seed 42); the clock is a ``FakeClock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from etl.sandbox import FakeClock, SandboxConfig, build_app, state_of
from etl.sandbox.dataset import Dataset
from etl.sandbox.state import State, Stats

DEFAULT_TEST_EVENTS = 20_000


@dataclass
class SandboxHandle:
    base_url: str  # http://127.0.0.1:PORT/api/v1
    root_url: str  # http://127.0.0.1:PORT
    api_key: str
    clock: FakeClock
    config: SandboxConfig
    dataset: Dataset
    stats: Stats
    state: State
    app: web.Application
    headers: dict[str, str] = field(default_factory=dict)  # {"X-API-Key": api_key}

    @property
    def feed_url(self) -> str:
        return self.root_url + "/api/v1/events/d4ta/x7k9/feed"

    @property
    def stream_access_url(self) -> str:
        return self.root_url + "/internal/dashboard/stream-access"

    def live(self) -> int:
        """How many live events exist now (``live_rate``)."""
        return self.state.live()

    def ids(self) -> list[str]:
        """Every id the API serves right now, in API order."""
        return self.dataset.ids(self.live())


SandboxFactory = Callable[..., Awaitable[SandboxHandle]]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxFactory]:
    runners: list[web.AppRunner] = []

    async def start(
        config: SandboxConfig | None = None, *, clock: FakeClock | None = None, **overrides: Any
    ) -> SandboxHandle:
        cfg = config or SandboxConfig(events=DEFAULT_TEST_EVENTS)
        if overrides:
            cfg = cfg.with_(**overrides)
        clk = clock or FakeClock()
        app = build_app(cfg, clock=clk)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        root = f"http://127.0.0.1:{port}"
        state = state_of(app)
        key = cfg.keys[0]
        return SandboxHandle(
            base_url=root + "/api/v1",
            root_url=root,
            api_key=key,
            clock=clk,
            config=cfg,
            dataset=state.dataset,
            stats=state.stats,
            state=state,
            app=app,
            headers={"X-API-Key": key},
        )

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@dataclass
class Reply:
    status: int
    headers: Any  # CIMultiDictProxy[str]
    text: str

    def json(self) -> Any:
        import json

        return json.loads(self.text)


async def fetch(
    http: Any, method: str, url: str, *, params: dict[str, str] | None = None, **kw: Any
) -> Reply:
    """One request -> status, headers and body text (for tests)."""
    async with http.request(method, url, params=params, **kw) as resp:
        return Reply(resp.status, resp.headers, await resp.text())
