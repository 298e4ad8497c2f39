"""Timestamp formats on /events: the recorded mix, the per-event rule, and every other format.

Whatever the format, the instant equals the event's true timestamp (to the ms; epoch seconds
and RFC 2822 are lossy and compare to the second).
"""

from __future__ import annotations

import datetime as dt
import email.utils

import aiohttp

from etl.sandbox.tsformat import LOSSY, format_name
from tests.fixtures_sandbox import SandboxFactory, fetch


def instant_ms(value: object) -> int:
    """A test-side reading of every format the sandbox sends."""
    if isinstance(value, int):
        return value if value > 10**11 else value * 1000
    assert isinstance(value, str)
    if value.isdigit():
        return int(value)
    if value[:3].isalpha():
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return round(parsed.timestamp() * 1000)


async def test_recorded_mix_follows_page_position(sandbox: SandboxFactory) -> None:
    """With the recorded mix, an event's timestamp format follows its position in the page, as in
    the real API."""
    sb = await sandbox(unlimited=True)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        first = (await fetch(http, "GET", sb.base_url + "/events", params={"limit": "9"})).json()
        cur = first["pagination"]["nextCursor"]
        second = await fetch(
            http, "GET", sb.base_url + "/events", params={"limit": "9", "cursor": cur}
        )
    for body, offset in ((first, 0), (second.json(), 9)):
        stamps = [e["timestamp"] for e in body["data"]]
        assert [isinstance(s, int) for s in stamps] == [True, False, False] * 3
        for s in stamps:
            if isinstance(s, str):
                assert len(s) == 24 and s.endswith("Z") and s[10] == "T" and s[19] == "."
        truth = sb.dataset.timestamps()[offset : offset + 9]
        assert [instant_ms(s) for s in stamps] == truth


async def test_per_event_rule_keeps_an_events_format_across_pages(sandbox: SandboxFactory) -> None:
    """With timestamp_rule=event, an event keeps its format whichever page it lands on."""
    sb = await sandbox(unlimited=True, timestamp_rule="event")
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        a = (await fetch(http, "GET", sb.base_url + "/events", params={"limit": "50"})).json()
        cur = a["data"][9]["id"], sb.dataset.ts_at(9)
        import base64
        import json

        raw = {"id": cur[0], "ts": cur[1], "v": 2, "exp": 2**42}
        c = base64.b64encode(json.dumps(raw).encode()).decode()
        b = (await fetch(http, "GET", sb.base_url + "/events", params={"cursor": c})).json()
    by_id = {e["id"]: type(e["timestamp"]) for e in a["data"]}
    for e in b["data"][:40]:
        assert by_id[e["id"]] is type(e["timestamp"])
    assert {type(e["timestamp"]) for e in a["data"]} == {int, str}


async def test_mixed_formats_keep_the_true_instant(sandbox: SandboxFactory) -> None:
    """Every mixed timestamp format still denotes the event's true instant (to the precision the
    format has)."""
    sb = await sandbox(unlimited=True, timestamp_formats="mixed")
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        body = (await fetch(http, "GET", sb.base_url + "/events", params={"limit": "500"})).json()
    truth = sb.dataset.timestamps()[:500]
    seen: set[str] = set()
    for i, (event, true_ms) in enumerate(zip(body["data"], truth, strict=True)):
        name = format_name(sb.config, i)
        seen.add(name)
        got = instant_ms(event["timestamp"])
        if name in LOSSY:
            assert got == true_ms // 1000 * 1000, (name, event["timestamp"])
        else:
            assert got == true_ms, (name, event["timestamp"])
    assert seen == {
        "epoch_ms",
        "iso_z",
        "epoch_s",
        "iso_offset",
        "iso_naive",
        "space",
        "rfc2822",
        "ms_string",
        "iso_micro",
    }
    texts = [e["timestamp"] for e in body["data"]]
    assert any(isinstance(t, str) and t.endswith("+05:30") for t in texts)
    assert any(isinstance(t, str) and t.endswith("000Z") and len(t) == 27 for t in texts)
