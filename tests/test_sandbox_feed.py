"""Stream access, the token-gated feed, since/until, and the hidden throttle."""

from __future__ import annotations

import re

import aiohttp
import pytest

from etl.errors import ConfigError
from etl.sandbox.config import SandboxConfig
from tests.fixtures_sandbox import SandboxFactory, SandboxHandle, fetch

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/144.0 Safari/537.36"
)


async def token(sb: SandboxHandle, http: aiohttp.ClientSession) -> str:
    r = await fetch(http, "POST", sb.stream_access_url, headers={"User-Agent": BROWSER})
    assert r.status == 200, r.text
    value: str = r.json()["streamAccess"]["token"]
    return value


async def feed_walk(
    sb: SandboxHandle, http: aiohttp.ClientSession, tok: str, **params: str
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    cursor = None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = await fetch(http, "GET", sb.feed_url, params=q, headers={"X-Stream-Token": tok})
        assert r.status == 200, r.text
        body = r.json()
        out += body["data"]
        if not body["pagination"]["hasMore"]:
            return out
        cursor = body["pagination"]["nextCursor"]


async def test_stream_access_needs_a_browser_user_agent(sandbox: SandboxFactory) -> None:
    """The dashboard's stream-access endpoint refuses non-browser user agents and issues a token to
    a browser one."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        denied = await fetch(http, "POST", sb.stream_access_url, headers={"User-Agent": "curl/8"})
        r = await fetch(http, "POST", sb.stream_access_url, headers={"User-Agent": BROWSER})
    assert denied.status == 403
    assert denied.json() == {
        "error": "Forbidden",
        "message": "This endpoint requires dashboard access",
        "code": "DASHBOARD_REQUIRED",
    }
    access = r.json()["streamAccess"]
    assert access["endpoint"] == "/api/v1/events/d4ta/x7k9/feed"
    assert re.fullmatch(r"[0-9a-f]{64}", access["token"])
    assert access["expiresIn"] == 300 and access["tokenHeader"] == "X-Stream-Token"
    assert r.json()["meta"]["generatedAt"].endswith("Z")
    assert "X-RateLimit-Limit" not in r.headers


async def test_feed_walk_returns_every_id_with_epoch_ms_and_no_limit_headers(
    sandbox: SandboxFactory,
) -> None:
    """The feed serves every id once, timestamps in epoch ms, and no rate-limit headers (its
    throttle is hidden)."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        tok = await token(sb, http)
        first = await fetch(http, "GET", sb.feed_url, headers={"X-Stream-Token": tok})
        events = await feed_walk(sb, http, tok, limit="5000")
    assert "X-RateLimit-Limit" not in first.headers and "X-Cache" not in first.headers
    assert first.json()["pagination"]["cursorExpiresIn"] == 116
    assert [e["id"] for e in events] == sb.dataset.ids()
    assert [e["timestamp"] for e in events] == sb.dataset.timestamps()  # all epoch-ms ints


async def test_feed_token_missing_unknown_or_expired_is_403(sandbox: SandboxFactory) -> None:
    """The feed refuses a missing, unknown or expired stream token with 403."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        old = await token(sb, http)
        sb.clock.advance(200)
        new = await token(sb, http)
        none = await fetch(http, "GET", sb.feed_url)
        bogus = await fetch(http, "GET", sb.feed_url, headers={"X-Stream-Token": "ab" * 32})
        old_still = await fetch(http, "GET", sb.feed_url, headers={"X-Stream-Token": old})
        sb.clock.advance(100)
        old_expired = await fetch(http, "GET", sb.feed_url, headers={"X-Stream-Token": old})
        new_ok = await fetch(http, "GET", sb.feed_url, headers={"X-Stream-Token": new})
    for r in (none, bogus, old_expired):
        assert r.status == 403 and r.json()["code"] == "INVALID_STREAM_TOKEN"
    assert old_still.status == 200  # a new token does not invalidate the old one
    assert new_ok.status == 200


async def test_feed_since_until_inclusive_by_default(sandbox: SandboxFactory) -> None:
    """The feed's since/until bounds include their endpoints by default."""
    sb = await sandbox()
    ts = sb.dataset.timestamps()
    ids = sb.dataset.ids()
    until, since = ts[1000], ts[3000]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        tok = await token(sb, http)
        got = await feed_walk(sb, http, tok, since=str(since), until=str(until), limit="700")
    want = [i for i, t in zip(ids, ts, strict=True) if since <= t <= until]
    assert [e["id"] for e in got] == want


async def test_feed_bounds_exclusive_knob(sandbox: SandboxFactory) -> None:
    """With feed_bounds_inclusive off, the feed's bounds exclude their endpoints."""
    sb = await sandbox(feed_bounds_inclusive=False)
    ts = sb.dataset.timestamps()
    ids = sb.dataset.ids()
    until, since = ts[10], ts[20]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        tok = await token(sb, http)
        got = await feed_walk(sb, http, tok, since=str(since), until=str(until))
    assert [e["id"] for e in got] == [i for i, t in zip(ids, ts, strict=True) if since < t < until]


async def test_feed_teapot_knob_refuses_bounds_outside_the_data(sandbox: SandboxFactory) -> None:
    """With feed_teapot, bounds outside the data's range are refused with 418."""
    sb = await sandbox(feed_teapot=True)
    ts = sb.dataset.timestamps()
    newest, oldest = ts[0], ts[-1]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        h = {"X-Stream-Token": await token(sb, http)}

        async def status(**params: int) -> int:
            q = {k: str(v) for k, v in params.items()}
            return (await fetch(http, "GET", sb.feed_url, params=q, headers=h)).status

        assert await status(since=oldest - 1) == 418
        assert await status(until=newest + 1) == 418
        assert await status(since=oldest, until=newest) == 200
        assert await status() == 200
    plain = await sandbox()
    async with aiohttp.ClientSession(headers=plain.headers) as http:
        h = {"X-Stream-Token": await token(plain, http)}
        r = await fetch(http, "GET", plain.feed_url, params={"since": "1"}, headers=h)
        assert r.status == 200  # off by default


async def test_feed_down_after_knob_fails_every_later_request(sandbox: SandboxFactory) -> None:
    """With feed_down_after=N, the feed fails every request after the N-th."""
    sb = await sandbox(feed_down_after=2)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        h = {"X-Stream-Token": await token(sb, http)}
        statuses = [(await fetch(http, "GET", sb.feed_url, headers=h)).status for _ in range(4)]
        h = {"X-Stream-Token": await token(sb, http)}  # a fresh token does not revive it
        statuses.append((await fetch(http, "GET", sb.feed_url, headers=h)).status)
    assert statuses == [200, 200, 503, 503, 503]


def test_feed_down_after_must_not_be_negative() -> None:
    """A negative feed_down_after is a configuration error."""
    with pytest.raises(ConfigError, match="feed_down_after must be >= 0"):
        SandboxConfig(events=10, feed_down_after=-1)


async def test_hidden_feed_throttle_is_a_sliding_window(sandbox: SandboxFactory) -> None:
    """The feed's hidden throttle counts requests over a sliding window: 429 past the count, served
    again as old requests leave the window."""
    sb = await sandbox(feed_throttle=3, feed_window=300)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        tok = await token(sb, http)
        h = {"X-Stream-Token": tok}
        statuses = []
        for _ in range(3):
            statuses.append((await fetch(http, "GET", sb.feed_url, headers=h)).status)
            sb.clock.advance(10)
        refused = await fetch(http, "GET", sb.feed_url, headers=h)
        sb.clock.advance(300 - 30 + 0.001)  # the first request leaves the window
        tok = await token(sb, http)
        h = {"X-Stream-Token": tok}
        again = await fetch(http, "GET", sb.feed_url, headers=h)
        refused_again = await fetch(http, "GET", sb.feed_url, headers=h)
    assert statuses == [200, 200, 200]
    assert refused.status == 429 and refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert "Retry-After" not in refused.headers and "X-RateLimit-Limit" not in refused.headers
    assert again.status == 200 and refused_again.status == 429
    assert sb.stats.rate_limited["feed"] == 2


async def test_feed_retry_after_knob(sandbox: SandboxFactory) -> None:
    """With feed_retry_after, the feed's 429 carries a Retry-After header."""
    sb = await sandbox(feed_throttle=1, feed_retry_after=True)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        h = {"X-Stream-Token": await token(sb, http)}
        await fetch(http, "GET", sb.feed_url, headers=h)
        refused = await fetch(http, "GET", sb.feed_url, headers=h)
    assert refused.status == 429 and refused.headers["Retry-After"] == "300"


async def test_feed_accepts_forged_cursors(sandbox: SandboxFactory) -> None:
    """The feed accepts a forged cursor (upper + 1, zero id), which is how a shard starts."""
    import base64
    import json

    sb = await sandbox()
    ts, ids = sb.dataset.timestamps(), sb.dataset.ids()
    exp = round(sb.clock.time() * 1000) + 10_000
    cur = base64.b64encode(
        json.dumps({"id": ids[99], "ts": ts[99], "v": 2, "exp": exp}).encode()
    ).decode()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        h = {"X-Stream-Token": await token(sb, http)}
        r = await fetch(http, "GET", sb.feed_url, params={"cursor": cur, "limit": "5"}, headers=h)
        sb.clock.advance(11)
        expired = await fetch(http, "GET", sb.feed_url, params={"cursor": cur}, headers=h)
    assert [e["id"] for e in r.json()["data"]] == ids[100:105]
    assert expired.status == 400 and expired.json()["code"] == "CURSOR_EXPIRED"
