"""Auth (401 bodies), fixed-window rate limits per key and group, 429 shape, X-Cache."""

from __future__ import annotations

import aiohttp

from etl.sandbox import DEMO_API_KEY
from tests.fixtures_sandbox import SandboxFactory, fetch


async def test_missing_and_unknown_keys_get_401_with_a_clear_body(sandbox: SandboxFactory) -> None:
    """No key and an unknown key are both 401, each with its own code and message."""
    sb = await sandbox(api_keys=("ds_" + "a" * 32,))
    async with aiohttp.ClientSession() as http:
        missing = await fetch(http, "GET", sb.base_url + "/events")
        wrong = await fetch(http, "GET", sb.base_url + "/events", headers={"X-API-Key": "ds_nope"})
        demo = await fetch(
            http, "GET", sb.base_url + "/events", headers={"X-API-Key": DEMO_API_KEY}
        )
        ok = await fetch(http, "GET", sb.base_url + "/events", headers=sb.headers)
    assert missing.status == 401 and missing.json()["code"] == "MISSING_API_KEY"
    assert missing.json()["error"] == "Unauthorized" and "X-API-Key" in missing.json()["message"]
    assert wrong.status == 401 and wrong.json()["code"] == "INVALID_API_KEY"
    assert demo.status == 401  # the demo key only works when no key is configured
    assert ok.status == 200


async def test_events_limit_10_per_fixed_window_then_429(sandbox: SandboxFactory) -> None:
    """/events allows 10 requests per fixed window with X-RateLimit-* headers, then 429 with Retry-
    After until the window resets."""
    sb = await sandbox()
    url = sb.base_url + "/events"
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        seen = []
        for i in range(10):
            r = await fetch(http, "GET", url, params={"limit": str(i + 1)})
            seen.append(
                (r.status, r.headers["X-RateLimit-Remaining"], r.headers["X-RateLimit-Reset"])
            )
            sb.clock.advance(1)
        assert [s[0] for s in seen] == [200] * 10
        assert [s[1] for s in seen] == [str(9 - i) for i in range(10)]
        assert [s[2] for s in seen] == [str(60 - i) for i in range(10)]  # counts down
        sb.clock.advance(4)  # 14 s into the window
        r = await fetch(http, "GET", url, params={"limit": "99"})
        assert r.status == 429
        assert r.json() == {
            "error": "Too Many Requests",
            "message": "Rate limit exceeded. Try again in 46 seconds.",
            "code": "RATE_LIMIT_EXCEEDED",
            "rateLimit": {"limit": 10, "remaining": 0, "reset": 46, "retryAfter": 46},
        }
        assert r.headers["Retry-After"] == "46"
        assert r.headers["X-RateLimit-Limit"] == "10"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        not_found = await fetch(http, "GET", url + "/init")
        assert not_found.status == 429  # the limiter runs before routing
        sessions = await fetch(http, "GET", sb.base_url + "/sessions")
        assert sessions.status == 200 and sessions.headers["X-RateLimit-Remaining"] == "39"
        sb.clock.advance(46)
        r = await fetch(http, "GET", url, params={"limit": "98"})
        assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == "9"
    assert sb.stats.rate_limited["events"] == 1 and sb.stats.rate_limited["event"] == 1


async def test_query_param_auth_has_the_lower_limit(sandbox: SandboxFactory) -> None:
    """A key sent as ?api_key= gets the lower query-auth limit."""
    sb = await sandbox()
    async with aiohttp.ClientSession() as http:
        statuses = []
        for i in range(6):
            params = {"api_key": sb.api_key, "limit": str(i + 1)}
            r = await fetch(http, "GET", sb.base_url + "/events", params=params)
            statuses.append(r.status)
        assert r.headers["X-RateLimit-Limit"] == "5"
        header = await fetch(http, "GET", sb.base_url + "/events", headers=sb.headers)
    assert statuses == [200] * 5 + [429]
    assert header.headers["X-RateLimit-Remaining"] == "4"  # shared bucket: 5 spent of 10


async def test_separate_query_pool_knob(sandbox: SandboxFactory) -> None:
    """With query_auth_pool=separate, query-param requests spend their own bucket, not the header
    one."""
    sb = await sandbox(query_auth_pool="separate")
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            params = {"api_key": sb.api_key, "limit": str(i + 1)}
            await fetch(http, "GET", sb.base_url + "/events", params=params)
        header = await fetch(http, "GET", sb.base_url + "/events", headers=sb.headers)
    assert header.headers["X-RateLimit-Remaining"] == "9"


async def test_keys_have_their_own_buckets(sandbox: SandboxFactory) -> None:
    """Each API key has its own rate-limit bucket."""
    keys = ("ds_" + "1" * 32, "ds_" + "2" * 32)
    sb = await sandbox(api_keys=keys, rate_limit=2)
    async with aiohttp.ClientSession() as http:
        for limit in ("1", "2", "3"):
            r1 = await fetch(
                http,
                "GET",
                sb.base_url + "/events",
                params={"limit": limit},
                headers={"X-API-Key": keys[0]},
            )
        r2 = await fetch(http, "GET", sb.base_url + "/events", headers={"X-API-Key": keys[1]})
    assert r1.status == 429 and r2.status == 200


async def test_cache_hit_within_ttl_and_it_spends_a_token_by_default(
    sandbox: SandboxFactory,
) -> None:
    """The same GET within the cache TTL is a cache hit (X-Cache: HIT, same request id) and still
    spends a token by default."""
    sb = await sandbox()
    url = sb.base_url + "/events"
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        a = await fetch(http, "GET", url, params={"limit": "5"})
        sb.clock.advance(29)
        b = await fetch(http, "GET", url, params={"limit": "5"})
        sb.clock.advance(2)
        c = await fetch(http, "GET", url, params={"limit": "5"})
    assert (a.headers["X-Cache"], b.headers["X-Cache"], c.headers["X-Cache"]) == (
        "MISS",
        "HIT",
        "MISS",
    )
    assert a.headers["X-Cache-TTL"] == "30"
    assert b.text == a.text and b.headers["X-Request-ID"] == a.json()["meta"]["requestId"]
    assert [r.headers["X-RateLimit-Remaining"] for r in (a, b, c)] == ["9", "8", "7"]


async def test_cache_hits_can_be_free(sandbox: SandboxFactory) -> None:
    """With cache_hit_consumes off, a cache hit spends no token."""
    sb = await sandbox(cache_hit_consumes=False)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        a = await fetch(http, "GET", sb.base_url + "/events")
        b = await fetch(http, "GET", sb.base_url + "/events")
    assert b.headers["X-Cache"] == "HIT"
    assert a.headers["X-RateLimit-Remaining"] == b.headers["X-RateLimit-Remaining"] == "9"


async def test_time_scale_divides_windows(sandbox: SandboxFactory) -> None:
    """--time-scale divides the rate-limit windows: a window of 60 s passes in 1 s at scale 60."""
    sb = await sandbox(time_scale=60.0, rate_limit=1)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        ok = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "1"})
        limited = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "2"})
        sb.clock.advance(1.0)
        again = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "3"})
    assert ok.status == 200 and ok.json()["pagination"]["cursorExpiresIn"] == 1
    assert limited.status == 429 and limited.headers["Retry-After"] == "1"
    assert again.status == 200


async def test_unlimited_turns_limits_off(sandbox: SandboxFactory) -> None:
    """--unlimited turns the rate limits off."""
    sb = await sandbox(unlimited=True, rate_limit=1)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        statuses = [(await fetch(http, "GET", sb.base_url + "/events")).status for _ in range(5)]
    assert statuses == [200] * 5
