"""Running a declarative source against the sandbox's GitHub surface on virtual time.

One ``FakeClock`` (etl.clock, autojump) drives both sides: the sandbox reads its epoch
time from it, the client sleeps on it, so rate-limit waits of an hour take milliseconds.
``run`` goes through the same wiring as `etl sync` (``etl.cli.sources.sync_source``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from etl.auth.tokens import TokenSet
from etl.cli.sync import sync_source
from etl.clock import FakeClock
from etl.rest.load import load, parse, resolve
from etl.rest.spec import SourceSpec
from etl.rest.sync import StreamResult
from etl.sink.tokens import PgTokenStore
from etl.source.retry import RetryPolicy
from tests.fixtures_github import GithubHandle

GITHUB_SPEC = Path(__file__).parent.parent / "etl/sources/specs/github.yaml"
EPOCH = 1_771_533_513.0


class Bridge:
    """The sandbox's epoch clock, read from the test's virtual clock."""

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake

    def time(self) -> float:
        return EPOCH + self.fake.now()

    def advance(self, seconds: float) -> None:
        self.fake.advance(seconds)


def github_spec(gh: GithubHandle) -> SourceSpec:
    env = {"GITHUB_API_URL": gh.base_url, "GITHUB_OAUTH_URL": gh.base_url + "/login"}
    return resolve(load(GITHUB_SPEC), env)


def spec_here(text: str, gh: GithubHandle) -> SourceSpec:
    return resolve(parse(text, "test-spec.yaml"), {"API": gh.base_url, "TOKEN": gh.token})


async def sign_in(gh: GithubHandle, db_url: str, source: str = "github") -> TokenSet:
    """What `etl auth github` leaves in the database."""
    now = gh.clock.time()
    tokens = TokenSet.from_response(gh.state.oauth.issue(now, from_device=True), now, "test")
    await PgTokenStore(db_url).save(source, tokens)
    return tokens


async def run(
    spec: SourceSpec,
    gh: GithubHandle,
    db_url: str,
    *,
    streams: list[str] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[StreamResult]:
    bridge = gh.clock
    assert isinstance(bridge, Bridge)
    return await sync_source(
        spec,
        db_url,
        streams,
        should_stop=should_stop,
        clock=bridge.fake,
        wall=bridge.time,
        retry=RetryPolicy(max_attempts=10, rng=random.Random(1)),
    )


async def rows(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def expected_issues(gh: GithubHandle) -> dict[int, tuple[str, int]]:
    """Every issue the sandbox holds now: id -> (title, updated epoch)."""
    return {i.id: (i.title, i.updated) for i in gh.state.repo.issues.values()}


async def loaded_issues(db_url: str, table: str = "github_issues") -> dict[int, tuple[str, int]]:
    got = await rows(db_url, f"SELECT id, title, updated_at FROM {table}")
    return {r["id"]: (r["title"], int(r["updated_at"].timestamp())) for r in got}
