"""Cursor format, forging/refreshing, expiry on the fake clock, tie-break, malformed input."""

from __future__ import annotations

import base64
import json

import aiohttp

from tests.fixtures_sandbox import SandboxFactory, SandboxHandle, fetch

ZERO = "00000000-0000-0000-0000-000000000000"


def decode(cursor: str) -> dict[str, object]:
    return json.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4)))


def forge(event_id: str, ts: int, exp: int, *, urlsafe: bool = False, pad: bool = False) -> str:
    raw = json.dumps({"id": event_id, "ts": ts, "v": 2, "exp": exp}, separators=(",", ":")).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


async def page(sb: SandboxHandle, http: aiohttp.ClientSession, **params: str) -> dict[str, object]:
    r = await fetch(http, "GET", sb.base_url + "/events", params=params)
    assert r.status == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_next_cursor_format_and_lifetime(sandbox: SandboxFactory) -> None:
    """nextCursor is unpadded base64 of compact JSON naming the last event, expiring in about 116
    s, as the real API's."""
    sb = await sandbox()
    now_ms = round(sb.clock.time() * 1000)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        body = await page(sb, http, limit="10")
    cursor = body["pagination"]["nextCursor"]  # type: ignore[index]
    assert "=" not in cursor and "-" not in cursor and "_" not in cursor
    raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4))
    assert raw.startswith(b'{"id":"') and b" " not in raw
    c = decode(cursor)
    assert list(c) == ["id", "ts", "v", "exp"] and c["v"] == 2
    last = body["data"][-1]  # type: ignore[index]
    assert c["id"] == last["id"] and c["ts"] == sb.dataset.ts_at(9)
    assert c["exp"] == now_ms + 117_000
    assert body["pagination"]["cursorExpiresIn"] == 116  # type: ignore[index]


async def test_expired_cursor_is_400_and_a_refreshed_one_works(sandbox: SandboxFactory) -> None:
    """A cursor past its lifetime is refused with 400 CURSOR_EXPIRED; a fresh one for the same
    place works."""
    sb = await sandbox(unlimited=True)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        first = await page(sb, http, limit="10")
        cursor = first["pagination"]["nextCursor"]  # type: ignore[index]
        sb.clock.advance(116)
        assert (
            await fetch(http, "GET", sb.base_url + "/events", params={"cursor": cursor})
        ).status == 200
        sb.clock.advance(120 * 60)
        r = await fetch(
            http, "GET", sb.base_url + "/events", params={"cursor": cursor, "limit": "10"}
        )
        assert r.status == 400
        assert r.json() == {
            "error": "Bad Request",
            "message": "Cursor expired 119 minute(s) ago",
            "code": "CURSOR_EXPIRED",
        }
        c = decode(cursor)
        fresh = forge(str(c["id"]), int(c["ts"]), round(sb.clock.time() * 1000) + 60_000)  # type: ignore[call-overload]
        again = await page(sb, http, cursor=fresh, limit="10")
    assert [e["id"] for e in again["data"]] == sb.dataset.ids()[10:20]  # type: ignore[union-attr]


async def test_forged_cursors_position_by_ts_with_id_tie_break(sandbox: SandboxFactory) -> None:
    """A forged cursor positions strictly after (ts, id), ties at one timestamp broken by id."""
    sb = await sandbox(unlimited=True)
    ds = sb.dataset
    ts = ds.timestamps()
    ids = ds.ids()
    tie = next(i for i in range(len(ts) - 1) if ts[i] == ts[i + 1])
    exp = round(sb.clock.time() * 1000) + 100_000
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        # strictly after (ts, id): the tied neighbour with the smaller id comes next
        after_first_of_tie = await page(sb, http, cursor=forge(ids[tie], ts[tie], exp), limit="3")
        # a zero id skips every event at that ts (all ids compare greater)
        zero = await page(sb, http, cursor=forge(ZERO, ts[tie], exp, urlsafe=True), limit="3")
        # a ts above the newest gives the first page; padding is accepted
        top = await page(sb, http, cursor=forge(ZERO, ts[0] + 10**9, exp, pad=True), limit="3")
        # a ts below the oldest gives an empty last page
        bottom = await page(sb, http, cursor=forge(ZERO, ts[-1] - 1, exp), limit="3")
        mid = await page(
            sb, http, cursor=forge("ffffffff-ffff-4fff-bfff-ffffffffffff", ts[5000], exp)
        )
    assert ids[tie] > ids[tie + 1]
    assert [e["id"] for e in after_first_of_tie["data"]] == ids[tie + 1 : tie + 4]  # type: ignore[union-attr]
    nxt = next(i for i in range(tie, len(ts)) if ts[i] < ts[tie])
    assert [e["id"] for e in zero["data"]] == ids[nxt : nxt + 3]  # type: ignore[union-attr]
    assert [e["id"] for e in top["data"]] == ids[:3]  # type: ignore[union-attr]
    assert bottom["data"] == []
    assert bottom["pagination"] == {
        "limit": 3,
        "hasMore": False,
        "nextCursor": None,
        "cursorExpiresIn": None,
    }
    first_at = ts.index(ts[5000])
    assert mid["data"][0]["id"] == ids[first_at]  # type: ignore[index]


async def test_malformed_cursors_are_invalid_cursor(sandbox: SandboxFactory) -> None:
    """Cursors that are not base64, not JSON or of the wrong shape are refused with 400
    INVALID_CURSOR."""
    sb = await sandbox(unlimited=True)
    exp = round(sb.clock.time() * 1000) + 100_000
    bad = [
        "not base64 !!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1,2]").decode(),
        base64.b64encode(json.dumps({"id": "x", "ts": 1, "v": 1, "exp": exp}).encode()).decode(),
        base64.b64encode(json.dumps({"id": "x", "ts": "1", "v": 2, "exp": exp}).encode()).decode(),
        base64.b64encode(json.dumps({"ts": 1, "v": 2, "exp": exp}).encode()).decode(),
    ]
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        for cursor in bad:
            r = await fetch(http, "GET", sb.base_url + "/events", params={"cursor": cursor})
            assert r.status == 400, cursor
            assert r.json()["code"] == "INVALID_CURSOR"
            assert r.json()["error"] == "Bad Request"


async def test_sessions_cursor_pages_in_started_at_order(sandbox: SandboxFactory) -> None:
    """Walking /sessions by cursor returns every session once, in started_at order."""
    sb = await sandbox(unlimited=True)
    seen: list[dict[str, object]] = []
    cursor = None
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        while True:
            params = {"limit": "150", **({"cursor": cursor} if cursor else {})}
            r = await fetch(http, "GET", sb.base_url + "/sessions", params=params)
            body = r.json()
            seen += body["data"]
            if not body["pagination"]["hasMore"]:
                break
            assert body["pagination"]["cursorExpiresIn"] == 119
            cursor = body["pagination"]["nextCursor"]
            assert decode(cursor)["ts"] == _ms(body["data"][-1]["startedAt"])
        detail = await fetch(http, "GET", f"{sb.base_url}/sessions/{seen[0]['id']}")
        missing = await fetch(http, "GET", f"{sb.base_url}/sessions/nope")
    assert len(seen) == len({s["id"] for s in seen}) == body["meta"]["total"]
    starts = [_ms(str(s["startedAt"])) for s in seen]
    assert starts == sorted(starts, reverse=True)
    assert sum(int(s["eventCount"]) for s in seen) == 20_000  # type: ignore[call-overload]
    assert detail.json()["data"] == seen[0]
    assert missing.status == 404


def _ms(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
