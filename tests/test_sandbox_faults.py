"""Injected faults: ALB 5xx, truncated JSON, dropped connections, slow responses, missing
fields, invalid events; reproducible from the fault seed; off under --unlimited."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.fixtures_sandbox import SandboxFactory, fetch


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_gateway_errors_are_alb_html(sandbox: SandboxFactory, status: int) -> None:
    """An injected 5xx looks like the load balancer's: HTML body, awselb server header, counted in
    the stats."""
    sb = await sandbox(**{f"p_{status}": 1.0})
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events")
    assert r.status == status
    assert r.headers["Server"] == "awselb/2.0"
    assert r.headers["Content-Type"].startswith("text/html")
    assert f"<title>{status} " in r.text
    assert sb.stats.faults[str(status)] == 1


async def test_truncated_body_has_valid_framing_but_cut_json(sandbox: SandboxFactory) -> None:
    """A truncated body keeps correct HTTP framing but its JSON is cut, so only the decoder
    notices."""
    sb = await sandbox(p_truncate=1.0)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "1000"})
    assert r.status == 200
    assert int(r.headers["Content-Length"]) == len(r.text.encode())
    assert r.text.startswith('{"data":[')
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert r.headers["X-Chaos-Applied"] == "truncatedBody"


async def test_dropped_connection_mid_body(sandbox: SandboxFactory) -> None:
    """A dropped connection breaks the body mid-way; the server keeps serving afterwards."""
    sb = await sandbox(p_drop=1.0)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        with pytest.raises(aiohttp.ClientPayloadError):
            await fetch(http, "GET", sb.base_url + "/events", params={"limit": "1000"})
        sb.state.faults.enabled = False  # the server is still up afterwards
        ok = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "5"})
    assert ok.status == 200


async def test_missing_fields_are_announced(sandbox: SandboxFactory) -> None:
    """With the missing-fields knob, ~1 % of a page's events lose one or two fields (never
    id or timestamp) and the response says so in X-Chaos-Applied / X-Chaos-Description."""
    sb = await sandbox(p_missing_fields=1.0)
    keys = ["id", "sessionId", "userId", "type", "name", "properties", "timestamp", "session"]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "500"})
    assert r.headers["X-Chaos-Applied"] == "missingFields"
    assert r.headers["X-Chaos-Description"].startswith("Missing fields: ")
    events = r.json()["data"]
    short = [e for e in events if list(e) != keys]
    assert len(short) == 5
    for e in short:
        assert "id" in e and "timestamp" in e and len(e) in (6, 7)
    gone = {k for e in short for k in keys if k not in e}
    assert r.headers["X-Chaos-Description"] == "Missing fields: " + ", ".join(sorted(gone))
    assert [e["id"] for e in events] == sb.dataset.ids()[:500]


async def test_missing_fields_on_an_empty_page_say_none_applicable(
    sandbox: SandboxFactory,
) -> None:
    """As the spec records it: the chaos is announced even when no field could be removed."""
    sb = await sandbox(p_missing_fields=1.0, events=10)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events", params={"type": "no-such-type"})
    assert r.json()["data"] == []
    assert r.headers["X-Chaos-Applied"] == "missingFields"
    assert r.headers["X-Chaos-Description"] == "Missing fields: none applicable"


async def test_invalid_events_knob(sandbox: SandboxFactory) -> None:
    """--invalid-events mixes events without an id or with an unparseable timestamp into real
    pages, at about the asked share."""
    sb = await sandbox(invalid_events=0.02, unlimited=False)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "5000"})
    events = r.json()["data"]
    no_id = [e for e in events if "id" not in e]
    bad_ts = [e for e in events if e.get("timestamp") == "not-a-timestamp"]
    assert 20 <= len(no_id) <= 90 and 20 <= len(bad_ts) <= 90
    valid = {e["id"] for e in events if "id" in e} - {e["id"] for e in bad_ts}
    assert valid <= set(sb.dataset.ids()[:5000])


async def test_faults_are_reproducible_from_the_seed(sandbox: SandboxFactory) -> None:
    """The same fault seed gives the same injected failures in the same order; another, others."""

    async def statuses(seed: int) -> list[int]:
        sb = await sandbox(p_502=0.3, p_503=0.2, fault_seed=seed, unlimited=False, rate_limit=100)
        async with aiohttp.ClientSession(headers=sb.headers) as http:
            return [
                (
                    await fetch(http, "GET", sb.base_url + "/events", params={"limit": str(i + 1)})
                ).status
                for i in range(30)
            ]

    a, b, c = await statuses(7), await statuses(7), await statuses(8)
    assert a == b and a != c
    assert {502, 503, 200} <= set(a)


async def test_slow_responses(sandbox: SandboxFactory) -> None:
    """p_slow delays responses by slow_seconds, enough for a client timeout to fire."""
    sb = await sandbox(p_slow=1.0, slow_seconds=0.8)
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(headers=sb.headers, timeout=timeout) as http:
        with pytest.raises(asyncio.TimeoutError):
            await fetch(http, "GET", sb.base_url + "/events")


async def test_unlimited_turns_faults_off(sandbox: SandboxFactory) -> None:
    """--unlimited turns every fault off, whatever the fault knobs say."""
    sb = await sandbox(p_500=1.0, unlimited=True)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(http, "GET", sb.base_url + "/events")
    assert r.status == 200 and "X-Chaos-Applied" not in r.headers
