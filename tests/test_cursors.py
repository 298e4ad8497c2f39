"""Cursor handling: rebuilt from positions, refreshed before expiry, never stale."""

from __future__ import annotations

import base64
import json

from etl.models import Position
from etl.source import cursors


def test_cursor_round_trips_and_matches_the_api_format() -> None:
    """A forged cursor is the API's base64 JSON with v=2 and an absolute expiry."""
    c = cursors.encode(Position(1769540656330, "af5c33c8-8aac-4aa0-9448-b07b52ddaf9f"), now_ms=0)
    doc = json.loads(base64.b64decode(c + "=" * (-len(c) % 4)))
    assert doc == {
        "id": "af5c33c8-8aac-4aa0-9448-b07b52ddaf9f",
        "ts": 1769540656330,
        "v": 2,
        "exp": cursors.CURSOR_TTL_MS,
    }
    assert cursors.decode(c) == (Position(1769540656330, doc["id"]), cursors.CURSOR_TTL_MS)


def test_expiring_cursor_is_refreshed_and_fresh_one_kept() -> None:
    """Close to expiry the same position gets a new exp; otherwise the cursor is untouched."""
    c = cursors.encode(Position(5, "x"), now_ms=0, ttl_ms=10_000)
    assert cursors.fresh(c, fallback=None, now_ms=0, margin_ms=5_000) == c
    refreshed = cursors.fresh(c, fallback=None, now_ms=9_000, margin_ms=5_000)
    assert refreshed is not None and refreshed != c
    assert cursors.decode(refreshed) == (Position(5, "x"), 9_000 + cursors.CURSOR_TTL_MS)


def test_unknown_cursor_format_is_passed_through() -> None:
    """An opaque cursor (format changed upstream) is used as the API gave it."""
    assert cursors.decode("not-base64-json") is None
    assert cursors.fresh("opaque", fallback=None, now_ms=0, margin_ms=0) == "opaque"


def test_forged_start_includes_every_event_at_the_boundary() -> None:
    """(ts+1, zero id) positions before all events at ts, whether or not ids break ties."""
    pos = cursors.after_inclusive(1000)
    assert pos.ts_ms == 1001 and set(pos.id) <= {"0", "-"}
