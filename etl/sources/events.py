"""DataSync's ``events`` stream: the record as the API sends it and the table's columns.

A leaf module (no I/O, nothing of the engine's): the source decodes pages into
``RawEvent``s, ``etl.transform`` turns them into rows of ``EVENT_COLUMNS``, the events
sink copies those rows into ``events``, and ``etl discover datasync`` shows the same
columns. ``etl.source.datasync.events_stream`` assembles the ``Stream`` the engine runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import msgspec

from etl.models import StreamColumn

STREAM = "events"


class RawEvent(msgspec.Struct, omit_defaults=True):
    """One event as the API sent it. Loose on purpose: validation happens in transform.

    ``properties`` and ``session`` stay raw JSON bytes: they go to jsonb as they came.
    """

    id: Any = None
    sessionId: Any = None
    userId: Any = None
    type: Any = None
    name: Any = None
    properties: msgspec.Raw | None = None
    timestamp: Any = None
    session: msgspec.Raw | None = None


class MalformedEvent(RawEvent, omit_defaults=True):
    """An element of ``data`` that could not be decoded as an event; transform quarantines it."""

    raw: str = ""  # the element's JSON text (invalid UTF-8 replaced)
    error: str = ""


# (column, type, nullable, the API field it comes from), in the table's order
# (ingested_at is defaulted by the table).
_COLUMNS: tuple[tuple[str, Any, bool, str], ...] = (
    ("id", "uuid", False, "id"),
    ("session_id", "uuid", True, "sessionId"),
    ("user_id", "uuid", True, "userId"),
    ("type", "text", False, "type"),
    ("name", "text", True, "name"),
    ("occurred_at", "timestamp", False, "timestamp"),
    ("properties", "json", False, "properties"),
    ("session", "json", True, "session"),
    ("timestamp_raw", "text", False, "timestamp"),
)
COLUMNS: tuple[StreamColumn, ...] = tuple(StreamColumn(n, t, null) for n, t, null, _ in _COLUMNS)
SOURCE_FIELDS: dict[str, str] = {n: f for n, _, _, f in _COLUMNS}  # column -> API field
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
PRIMARY_KEY = ("id",)

# (id, session_id, user_id, type, name, occurred_at, properties json, session json, raw ts)
EventRow: TypeAlias = tuple[
    str, str | None, str | None, str, str | None, dt.datetime, str, str | None, str
]

# Every recorded event carries all of these, never null (spec §3.1); the feed announces
# injected field removal with ``X-Chaos-Applied: missingFields``.
REQUIRED_FIELDS = (
    "id",
    "sessionId",
    "userId",
    "type",
    "name",
    "properties",
    "timestamp",
    "session",
)

# Timestamps sent in whole seconds read up to 999 ms early: a shard's lower bound gets a
# second of slack, so an event just above it is never left to a shard whose cursor starts
# below it. The overlap is re-read, and the primary key absorbs it.
BOUNDARY_SLACK_MS = 1_000
