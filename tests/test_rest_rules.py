"""A spec's own rate-limit header names and response actions, against an API that is not
GitHub (issue 13): the far side here is a small loopback server whose misbehaviour the
test scripts; the run is `etl sync`'s own wiring on virtual time."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from etl.cli.sync import sync_source
from etl.clock import FakeClock
from etl.errors import ExitCode, PermanentSourceError, SourceError
from etl.rest.load import parse, resolve
from etl.source.retry import RetryPolicy
from tests.rest_harness import rows

ITEMS = 25  # three pages of 10 (offset paginator)
KEY = "k-secret-0001"

SPEC = """
name: rules
config:
  api: {env: API, required: true}
  key: {env: KEY, required: true, secret: true}
auth: {type: api_key, value: "${key}", name: X-Key, in: header}
base_url: ${api}
defaults:
  rate_limit:
    limit: RateLimit-Limit
    remaining: RateLimit-Remaining
    reset: RateLimit-Reset
    reset_format: seconds
    retry_after: X-Wait
  responses:
    - {status: 409, action: reset_pagination}
    - {status: 418, action: fail, message: the teapot is out of tea}
    - {status: 420, header_present: x-calm-down, action: retry}
streams:
  items:
    path: /items
    paginator: {type: offset, limit: 10}
    primary_key: id
    columns:
      id: integer
      name: text
"""


@dataclass
class FarSide:
    """The API: serves ``ITEMS`` items by offset; ``script`` answers the n-th data
    request (1-based) with a misbehaviour instead; every request is logged with the
    virtual time it arrived at."""

    clock: FakeClock
    script: dict[int, Callable[[], web.Response]] = field(default_factory=dict)
    log: list[tuple[float, int, dict[str, str], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def items(self, request: web.Request) -> web.Response:
        n = len(self.log) + 1
        offset = int(request.query.get("offset", "0"))
        self.log.append((self.clock.now(), offset, dict(request.headers), dict(request.query)))
        if n in self.script:
            return self.script[n]()
        page = [{"id": i, "name": f"item {i}"} for i in range(offset, min(offset + 10, ITEMS))]
        return web.json_response(page)

    def times(self) -> list[float]:
        return [t for t, *_ in self.log]

    def offsets(self) -> list[int]:
        return [o for _, o, *_ in self.log]


@pytest.fixture
async def far_side() -> AsyncIterator[FarSide]:
    side = FarSide(FakeClock())
    app = web.Application()
    app.router.add_get("/items", side.items)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    side.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield side
    await runner.cleanup()


async def _sync(side: FarSide, db_url: str) -> Any:
    spec = resolve(parse(SPEC, "rules.yaml"), {"API": side.url, "KEY": KEY})
    (result,) = await sync_source(
        spec,
        db_url,
        clock=side.clock,
        wall=lambda: 1_800_000_000.0 + side.clock.now(),
        retry=RetryPolicy(max_attempts=5, rng=random.Random(1)),
    )
    return result


def _answer(status: int, **headers: str) -> Callable[[], web.Response]:
    return lambda: web.json_response({"message": "no"}, status=status, headers=headers)


async def test_named_rate_limit_headers_with_a_reset_in_seconds_are_waited_out(far_side, db_url):
    """The spec's own header names: remaining 0 with a reset of 30 (seconds) holds the
    next request back 30 s; a 429 whose wait is in the spec's ``X-Wait`` header is retried
    after that many seconds; every item once, the key always in its header."""
    spent = web.json_response(
        [{"id": i, "name": f"item {i}"} for i in range(10)],
        headers={"RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"},
    )
    far_side.script = {1: lambda: spent, 2: _answer(429, **{"X-Wait": "7"})}
    result = await _sync(far_side, db_url)
    assert result.status == "succeeded"
    t = far_side.times()
    assert t[1] - t[0] >= 30.0  # the spent budget's reset, read as seconds
    assert t[2] - t[1] >= 7.0  # X-Wait
    assert far_side.offsets() == [0, 10, 10, 20]
    loaded = await rows(db_url, "SELECT id FROM rules_items")
    assert sorted(r["id"] for r in loaded) == list(range(ITEMS))
    assert all(h.get("X-Key") == KEY and "X-Key" not in q for _, _, h, q in far_side.log)


async def test_a_custom_retry_rule_and_reset_pagination_lose_nothing(far_side, db_url):
    """A status only the spec calls retryable (420 with its header) is retried; a 409 that
    the spec maps to ``reset_pagination`` starts the pages again; every item once."""
    far_side.script = {2: _answer(420, **{"x-calm-down": "1"}), 4: _answer(409)}
    result = await _sync(far_side, db_url)
    assert (result.status, result.resets) == ("succeeded", 1)
    assert far_side.offsets()[:4] == [0, 10, 10, 20] and far_side.offsets()[4] == 0
    loaded = await rows(db_url, "SELECT id FROM rules_items")
    assert sorted(r["id"] for r in loaded) == list(range(ITEMS))


async def test_a_fail_rule_stops_the_stream_with_its_message(far_side, db_url):
    """A 418 the spec maps to ``fail``: exit 5 with the spec's message, shown by the
    stream's state; the page before it stays loaded; the key appears nowhere."""
    far_side.script = {2: _answer(418)}
    with pytest.raises(PermanentSourceError) as err:
        await _sync(far_side, db_url)
    assert err.value.exit_code == ExitCode.UPSTREAM
    assert "HTTP 418: the teapot is out of tea" in str(err.value)
    assert far_side.offsets()[:2] == [0, 10] and 0 not in far_side.offsets()[1:]  # no reset
    (state,) = await rows(db_url, "SELECT status, last_error FROM stream_state")
    assert state["status"] == "failed" and "the teapot is out of tea" in state["last_error"]
    assert KEY not in str(err.value) + state["last_error"]
    assert len(await rows(db_url, "SELECT id FROM rules_items")) == 10  # the page before


async def test_a_reset_that_keeps_coming_back_fails_instead_of_looping(far_side, db_url):
    """Page 2 answers 409 (``reset_pagination``) every time: the stream starts again a few
    times, then fails (exit 5) instead of re-reading page 1 for ever; page 1 loaded once."""
    far_side.script = {n: _answer(409) for n in range(2, 100, 2)}
    with pytest.raises(SourceError) as err:
        await _sync(far_side, db_url)
    assert err.value.exit_code == ExitCode.UPSTREAM and "HTTP 409" in str(err.value)
    assert len(far_side.log) <= 10
    (state,) = await rows(db_url, "SELECT status FROM stream_state")
    assert state["status"] == "failed"
    assert len(await rows(db_url, "SELECT id FROM rules_items")) == 10
