"""DataSync cursors: base64 of compact JSON ``{"id","ts","v":2,"exp"}`` (not signed).

The API positions a cursor by ``ts`` with ``id`` as the tie-break and checks ``exp``
against its clock. So a cursor can be rebuilt from any committed (ts, id) and an
expiring one can be refreshed: the client never restarts a stream from scratch.
"""

from __future__ import annotations

import base64
import binascii
import json

from etl.models import ZERO_ID, Position

CURSOR_TTL_MS = 110_000  # a little under the API's 116-117 s


def encode(position: Position, *, now_ms: int, ttl_ms: int = CURSOR_TTL_MS) -> str:
    doc = {"id": position.id, "ts": position.ts_ms, "v": 2, "exp": now_ms + ttl_ms}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[Position, int] | None:
    """(position, exp_ms) of a cursor, or None when it is not in the known format."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in cursor or "_" in cursor) else None)
        doc = json.loads(raw)
        return Position(int(doc["ts"]), str(doc["id"])), int(doc["exp"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def after_inclusive(ts_ms: int) -> Position:
    """A position whose successors are every event with timestamp <= ``ts_ms``.

    Whether the API breaks ties by id or ignores the id, (ts+1, zero-id) includes all
    events at ``ts_ms``: re-fetching a few is harmless (the load is idempotent),
    skipping one would not be.
    """
    return Position(ts_ms + 1, ZERO_ID)


def fresh(
    cursor: str | None, *, fallback: Position | None, now_ms: int, margin_ms: int
) -> str | None:
    """A cursor that will not expire within ``margin_ms``.

    A known-format cursor close to expiry is re-encoded with a new ``exp``; an unknown
    format is used as is. With no cursor, one is forged from ``fallback`` (None: start
    at the head).
    """
    if cursor is not None:
        parsed = decode(cursor)
        if parsed is None:
            return cursor
        position, exp_ms = parsed
        if exp_ms - now_ms > margin_ms:
            return cursor
        return encode(position, now_ms=now_ms)
    if fallback is None:
        return None
    return encode(fallback, now_ms=now_ms)
