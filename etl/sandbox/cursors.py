"""Cursors as the real API made them: base64 of compact JSON ``{"id","ts","v":2,"exp"}``.

Not signed: any well-formed cursor with ``exp`` in the future is accepted (forging and
refreshing worked on the real service). Standard base64 without padding is produced;
base64url and padding are accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import msgspec


@dataclass(frozen=True, slots=True)
class Cursor:
    id: str
    ts: int
    exp: int  # epoch ms


class CursorError(ValueError):
    """``code`` is INVALID_CURSOR or CURSOR_EXPIRED; ``message`` is the client-facing text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(event_id: str, ts: int, exp: int) -> str:
    raw = f'{{"id":{json.dumps(event_id)},"ts":{ts},"v":2,"exp":{exp}}}'.encode()
    return base64.b64encode(raw).decode().rstrip("=")


def decode(text: str, now_ms: int) -> Cursor:
    """Parse and check a cursor against the clock; raises CursorError."""
    body = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        if len(text) > 4096:
            raise ValueError("too long")
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        obj = msgspec.json.decode(raw)
    except (ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise CursorError("INVALID_CURSOR", "Invalid cursor format") from exc
    if not isinstance(obj, dict):
        raise CursorError("INVALID_CURSOR", "Invalid cursor format")
    event_id, ts, v, exp = obj.get("id"), obj.get("ts"), obj.get("v"), obj.get("exp")
    if (
        not isinstance(event_id, str)
        or not _is_int(ts)
        or v != 2
        or not (_is_int(exp) or (isinstance(exp, float) and exp == exp))
    ):
        raise CursorError("INVALID_CURSOR", "Invalid cursor format")
    assert isinstance(ts, int) and isinstance(exp, int | float)
    if now_ms > exp:
        minutes = int((now_ms - exp) // 60_000)
        raise CursorError("CURSOR_EXPIRED", f"Cursor expired {minutes} minute(s) ago")
    return Cursor(event_id, ts, int(exp))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
