"""The ``github_sandbox`` fixture: the sandbox's GitHub surface on 127.0.0.1, fake clock.

async def test_x(github_sandbox):
    gh = await github_sandbox(issues=120, primary_limit=3)
    async with aiohttp.ClientSession(headers=gh.headers) as http: ...
    gh.clock.advance(3600)           # time moves only when told
    gh.state.repo.touch(5, gh.clock.time())
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from etl.sandbox import FakeClock, SandboxConfig, build_app
from etl.sandbox.app import github_state_of
from etl.sandbox.github import DEMO_REPO, DEMO_TOKEN, GithubConfig
from etl.sandbox.github.app import GithubState


@dataclass
class GithubHandle:
    base_url: str  # http://127.0.0.1:PORT/github   (api.github.com)
    token: str
    clock: FakeClock
    config: GithubConfig
    state: GithubState

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json"}

    @property
    def issues_url(self) -> str:
        return f"{self.base_url}/repos/{DEMO_REPO}/issues"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/login/oauth/access_token"


GithubFactory = Callable[..., Awaitable[GithubHandle]]


@pytest.fixture
async def github_sandbox() -> AsyncIterator[GithubFactory]:
    runners: list[web.AppRunner] = []

    async def start(*, clock: FakeClock | None = None, **overrides: Any) -> GithubHandle:
        cfg = GithubConfig(**{"issues": 120, **overrides})
        clk = clock or FakeClock()
        app = build_app(SandboxConfig(events=1000), clock=clk, github=cfg)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        return GithubHandle(
            f"http://127.0.0.1:{port}/github", DEMO_TOKEN, clk, cfg, github_state_of(app)
        )

    yield start
    for runner in reversed(runners):
        await runner.cleanup()
