"""Selecting a page of positions (cursor, filters, time bounds) and writing the envelope."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice

import msgspec

from etl.sandbox import cursors
from etl.sandbox.config import SandboxConfig
from etl.sandbox.dataset import CHUNK, EVENTS_PER_LIVE_SESSION, SESSIONS_PER_CHUNK, Dataset

_ENCODE = msgspec.json.Encoder().encode


def parse_limit(raw: str | None, config: SandboxConfig) -> int:
    """``limit``: default when absent or not a number, at least 1, silently capped."""
    if raw is None:
        return config.default_limit
    try:
        value = int(raw.strip())
    except ValueError:
        return config.default_limit
    return max(1, min(value, config.max_limit))


def expires_in(ttl: float) -> int:
    """The ``cursorExpiresIn`` the API reports for a nominal TTL (117 s -> 116)."""
    return max(1, math.floor(ttl - 1))


def select(
    ds: Dataset,
    live: int,
    start: int,
    end: int,
    limit: int,
    *,
    type_code: int | None = None,
    session: int | None = None,
) -> tuple[list[int], bool]:
    """Up to ``limit`` matching positions in ``[start, end)`` and whether more follow."""
    if start >= end:
        return [], False
    if type_code is None and session is None:
        stop = min(end, start + limit)
        return list(range(start, stop)), stop < end
    if session is not None:
        it = _session_positions(ds, live, start, end, session)
        if type_code is not None:
            it = (p for p in it if ds.type_code(p, live) == type_code)
    else:
        assert type_code is not None
        it = _type_positions(ds, live, start, end, type_code)
    got = list(islice(it, limit + 1))
    return got[:limit], len(got) > limit


def _type_positions(ds: Dataset, live: int, start: int, end: int, code: int) -> Iterator[int]:
    p = start
    while p < min(live, end):
        if ds.type_code(p, live) == code:
            yield p
        p += 1
    needle = bytes([code])
    q, qend = max(p, live) - live, end - live
    while True:
        q = ds.types.find(needle, q, qend)
        if q < 0:
            return
        yield q + live
        q += 1


def _session_positions(ds: Dataset, live: int, start: int, end: int, s: int) -> Iterator[int]:
    if s >= ds.static_sessions:
        k0 = (s - ds.static_sessions) * EVENTS_PER_LIVE_SESSION
        for k in range(min(live, k0 + EVENTS_PER_LIVE_SESSION) - 1, k0 - 1, -1):
            p = live - 1 - k
            if start <= p < end:
                yield p
        return
    chunk, slot = divmod(s, SESSIONS_PER_CHUNK)
    lo = chunk * CHUNK
    q, qend = max(lo, start - live), min(lo + CHUNK, ds.size, end - live)
    needle = bytes([slot])
    while q < qend:
        q = ds.slots.find(needle, q, qend)
        if q < 0:
            return
        yield q + live
        q += 1


def start_position(ds: Dataset, live: int, cursor: cursors.Cursor | None) -> int:
    return 0 if cursor is None else ds.after(cursor.ts, cursor.id, live)


def page_body(
    events: list[str],
    *,
    limit: int,
    has_more: bool,
    next_cursor: str | None,
    expires: int,
    total: int,
    rid: str,
) -> bytes:
    pagination = {
        "limit": limit,
        "hasMore": has_more,
        "nextCursor": next_cursor if has_more else None,
        "cursorExpiresIn": expires if has_more else None,
    }
    meta = {"total": total, "returned": len(events), "requestId": rid}
    return b"".join(
        (
            b'{"data":[',
            ",".join(events).encode(),
            b'],"pagination":',
            _ENCODE(pagination),
            b',"meta":',
            _ENCODE(meta),
            b"}",
        )
    )
