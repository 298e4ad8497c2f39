"""``/api/v1/sessions`` (startedAt DESC, cursor ts = startedAt), ``/sessions/{id}``, ``/metrics``.

The session table (start, end, count per static session) is computed on first use from the
per-event session slots, with C-level ``bytes.find``/``rfind``/``count`` per session.
Sessions of live events are not listed.
"""

from __future__ import annotations

import datetime as dt
from array import array

from aiohttp import web

from etl.sandbox import cursors, paging, responses
from etl.sandbox.dataset import CHUNK, SESSIONS_PER_CHUNK, Dataset
from etl.sandbox.state import State


class SessionTable:
    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        rows: list[tuple[int, str, int, int, int]] = []  # (start, id, s, end, count)
        for s in range(ds.static_sessions):
            chunk, slot = divmod(s, SESSIONS_PER_CHUNK)
            lo, hi = chunk * CHUNK, min(ds.size, (chunk + 1) * CHUNK)
            needle = bytes([slot])
            first = ds.slots.find(needle, lo, hi)
            if first < 0:
                continue
            last = ds.slots.rfind(needle, lo, hi)
            rows.append(
                (
                    ds.ts[last],
                    ds.session_info(s).id,
                    s,
                    ds.ts[first],
                    ds.slots.count(needle, lo, hi),
                )
            )
        rows.sort(reverse=True)
        self.starts = array("q", (r[0] for r in rows))
        self.rows = rows
        self.by_id = {r[1]: i for i, r in enumerate(rows)}

    def after(self, ts: int, session_id: str) -> int:
        lo, hi = 0, len(self.starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.starts[mid] > ts:
                lo = mid + 1
            else:
                hi = mid
        while lo < len(self.rows) and self.rows[lo][0] == ts and self.rows[lo][1] >= session_id:
            lo += 1
        return lo

    def render(self, i: int) -> dict[str, object]:
        start, sid, s, end, n = self.rows[i]
        info = self.ds.session_info(s)
        uid, name, email = self.ds.user_info(info.user_index)
        return {
            "id": sid,
            "userId": uid,
            "user": {"id": uid, "name": name, "email": email},
            "deviceType": info.device_type,
            "browser": info.browser,
            "os": info.os,
            "ipAddress": info.ip_address,
            "country": info.country,
            "city": info.city,
            "startedAt": _iso(start),
            "endedAt": _iso(end),
            "duration": (end - start) // 1000,
            "eventCount": n,
        }


def _iso(ts: int) -> str:
    return (
        dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def table(state: State) -> SessionTable:
    if state.session_table is None:
        state.session_table = SessionTable(state.dataset)
    return state.session_table


def list_sessions(state: State, request: web.Request, rid: str) -> web.Response:
    c = state.config
    t = table(state)
    limit = paging.parse_limit(request.query.get("limit"), c)
    now_ms = state.now_ms()
    start = 0
    raw = request.query.get("cursor")
    if raw:
        try:
            cur = cursors.decode(raw, now_ms)
        except cursors.CursorError as exc:
            return responses.error(400, exc.code, exc.message)
        start = t.after(cur.ts, cur.id)
    stop = min(len(t.rows), start + limit)
    items = [t.render(i) for i in range(start, stop)]
    has_more = stop < len(t.rows)
    ttl = c.scaled(c.sessions_cursor_ttl)
    nxt = None
    if has_more and items:
        last = t.rows[stop - 1]
        nxt = cursors.encode(last[1], last[0], now_ms + round(ttl * 1000))
    body = paging.page_body(
        [responses.json_bytes(x).decode() for x in items],
        limit=limit,
        has_more=has_more,
        next_cursor=nxt,
        expires=paging.expires_in(ttl),
        total=len(t.rows),
        rid=rid,
    )
    return responses.json_response(body, rid=rid)


def get_session(state: State, session_id: str, rid: str) -> web.Response:
    t = table(state)
    i = t.by_id.get(session_id)
    if i is None:
        return responses.error(
            404, "SESSION_NOT_FOUND", f"Session with id '{session_id}' not found"
        )
    return responses.json_response({"data": t.render(i), "meta": {"requestId": rid}}, rid=rid)


def metrics(state: State, request: web.Request, rid: str) -> web.Response:
    limit = paging.parse_limit(request.query.get("limit"), state.config)
    body = paging.page_body(
        [], limit=limit, has_more=False, next_cursor=None, expires=0, total=0, rid=rid
    )
    return responses.json_response(body, rid=rid)
