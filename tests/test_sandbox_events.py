"""/api/v1/events, /events/{id}, index, unknown routes: shapes, order, limits, filters."""

from __future__ import annotations

import itertools
import re

import aiohttp

from tests.fixtures_sandbox import SandboxFactory, fetch

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EVENT_KEYS = ["id", "sessionId", "userId", "type", "name", "properties", "timestamp", "session"]


async def walk(http: aiohttp.ClientSession, url: str, **params: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    cursor = None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = await fetch(http, "GET", url, params=q)
        assert r.status == 200, r.text
        body = r.json()
        out += body["data"]
        if not body["pagination"]["hasMore"]:
            assert body["pagination"]["nextCursor"] is None
            return out
        cursor = body["pagination"]["nextCursor"]


async def test_index_and_envelope(sandbox: SandboxFactory) -> None:
    """The API index lists the endpoints and /events answers with the documented envelope."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url)
        assert r.status == 200
        assert r.json()["endpoints"]["events"] == "/api/v1/events"
        r = await fetch(http, "GET", sb.base_url + "/events")
    assert r.status == 200
    body = r.json()
    assert list(body) == ["data", "pagination", "meta"]
    assert len(body["data"]) == 100  # default limit
    assert body["pagination"]["limit"] == 100 and body["pagination"]["hasMore"] is True
    assert body["pagination"]["cursorExpiresIn"] == 116
    assert body["meta"]["total"] == 20_000 and body["meta"]["returned"] == 100
    assert r.headers["X-Request-ID"] == body["meta"]["requestId"]
    assert r.headers["X-Powered-By"] == "Express"
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert re.fullmatch(r'W/"[0-9a-f]+-[A-Za-z0-9+/]{27}"', r.headers["ETag"])
    event = body["data"][0]
    assert list(event) == EVENT_KEYS
    assert (
        UUID4.match(event["id"])
        and UUID4.match(event["sessionId"])
        and UUID4.match(event["userId"])
    )
    assert re.fullmatch(r"event_[0-9a-z]{6}", event["name"])
    assert event["session"]["id"] == event["sessionId"]
    assert event["properties"] == {"page": "/home"}
    assert [e["id"] for e in body["data"]] == sb.dataset.ids()[:100]


async def test_limit_is_capped_silently_at_5000(sandbox: SandboxFactory) -> None:
    """A limit above 5000 is served as 5000 without an error, as the real API does."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        big = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "10000"})
        exact = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "5000"})
    assert big.status == exact.status == 200
    assert big.json()["pagination"]["limit"] == 5000
    assert len(big.json()["data"]) == 5000
    assert len(big.text) == len(exact.text)


async def test_walk_by_cursor_returns_exactly_the_dataset_in_order(sandbox: SandboxFactory) -> None:
    """Following nextCursor from the head returns every event exactly once, newest first (ts, then
    id, descending)."""
    sb = await sandbox(unlimited=True)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        events = await walk(http, sb.base_url + "/events", limit="5000")
    ids = [e["id"] for e in events]
    assert ids == sb.dataset.ids()
    assert len(set(ids)) == 20_000
    truth = sb.dataset.timestamps()
    keys = list(zip(truth, ids, strict=True))
    assert keys == sorted(keys, reverse=True)  # timestamp DESC, then id DESC
    assert any(a == b for a, b in itertools.pairwise(truth))  # ties exist


async def test_type_and_session_filters(sandbox: SandboxFactory) -> None:
    """?type= and ?sessionId= filter exactly; an unknown type gives an empty page, not an error."""
    sb = await sandbox(unlimited=True)
    all_events = [sb.dataset.event(p) for p in range(sb.dataset.size)]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        clicks = await walk(http, sb.base_url + "/events", type="click", limit="1000")
        session_id = all_events[123]["sessionId"]
        sess = await walk(http, sb.base_url + "/events", sessionId=str(session_id))
        none = await fetch(http, "GET", sb.base_url + "/events", params={"type": "nope"})
    assert [e["id"] for e in clicks] == [e["id"] for e in all_events if e["type"] == "click"]
    assert [e["id"] for e in sess] == [e["id"] for e in all_events if e["sessionId"] == session_id]
    assert 20 <= len(sess) <= 90
    assert none.json()["data"] == [] and none.json()["meta"]["total"] == 20_000


async def test_event_by_id_and_not_found(sandbox: SandboxFactory) -> None:
    """/events/{id} returns that event; unknown ids and undocumented paths are 404 with the API's
    body."""
    sb = await sandbox()
    wanted = sb.dataset.event(777)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        ok = await fetch(http, "GET", f"{sb.base_url}/events/{wanted['id']}")
        missing = await fetch(http, "GET", sb.base_url + "/events/bulk")
        unknown = await fetch(http, "GET", sb.base_url + "/export")
        other = await fetch(http, "GET", sb.root_url + "/api/v2/events")
    assert ok.status == 200 and ok.json()["data"] == wanted
    assert missing.status == 404
    assert missing.json() == {
        "error": "Not Found",
        "message": "Event with id 'bulk' not found",
        "code": "EVENT_NOT_FOUND",
    }
    assert missing.headers["X-RateLimit-Remaining"] == "8"  # 404 lookups spend the bucket
    for r in (unknown, other):
        assert r.status == 404
        assert r.json()["code"] == "ENDPOINT_NOT_FOUND"
        assert "X-RateLimit-Limit" not in r.headers


async def test_head_counts_and_options_is_a_gateway_timeout(sandbox: SandboxFactory) -> None:
    """HEAD spends a rate-limit token without a body or cache headers; OPTIONS on /events times out
    at the load balancer (504)."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        head = await fetch(http, "HEAD", sb.base_url + "/events")
        get = await fetch(http, "GET", sb.base_url + "/events")
        options = await fetch(http, "OPTIONS", sb.base_url + "/events")
    assert head.status == 200 and head.text == ""
    assert "X-Cache" not in head.headers
    assert head.headers["X-RateLimit-Remaining"] == "9"
    assert get.headers["X-RateLimit-Remaining"] == "8"
    assert options.status == 504 and options.headers["Server"] == "awselb/2.0"


async def test_health_metrics_and_stats(sandbox: SandboxFactory) -> None:
    """/health and /internal/stats need no key; /metrics needs one."""
    sb = await sandbox()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        health = await fetch(http, "GET", sb.root_url + "/health")
        metrics = await fetch(http, "GET", sb.base_url + "/metrics")
        stats = await fetch(http, "GET", sb.root_url + "/internal/stats")
    async with aiohttp.ClientSession() as anon:
        health_anon = await fetch(anon, "GET", sb.root_url + "/health")
        stats_anon = await fetch(anon, "GET", sb.root_url + "/internal/stats")
    assert health.text == "OK" and health_anon.status == 200
    assert stats_anon.status == 401
    m = metrics.json()
    assert m["data"] == [] and m["pagination"]["hasMore"] is False
    assert m["pagination"]["nextCursor"] is None and m["meta"]["total"] == 0
    assert metrics.headers["X-RateLimit-Limit"] == "30"
    counts = stats.json()["counts"]
    assert counts == {"users": 20, "sessions": counts["sessions"], "events": 20_000, "metrics": 0}
    assert 380 <= counts["sessions"] <= 400
    types = {t["type"]: t["count"] for t in stats.json()["distributions"]["eventTypes"]}
    assert sum(types.values()) == 20_000
    assert 0.32 < types["page_view"] / 20_000 < 0.38 and 0.22 < types["click"] / 20_000 < 0.28
