"""Users' newest events from memory: ``GET /events/{user_id}`` without filters.

Clients ask for many users' first pages (a dashboard per user, a service looking people up),
and each distinct user is a cache miss: one index walk over the user's hours, milliseconds
of database time per user on 3M events, so a few hundred users a second on 2 cores. Instead
the server holds, per data version, every user's newest ``PER_USER`` events as the JSON
bytes the route sends (``etl.read.user_pages``: two queries for all users), and answers a
user's first page (``limit`` below ``PER_USER``, no ``type``/``since``/``until``/``before``)
by joining the first ``limit`` of them: the same bytes as the database path (a test compares
them). Anything else, and every request while the pages of the current version are not held,
is answered by the database as before.

Filling takes seconds of database time (one scan of the events from the oldest user's cut),
so it runs in the background, once per data version, and only for a version that stayed the
same for ``STABLE_S`` (while an ingest writes every second, the database answers, as without
the store) and at least ``GAP`` fills' durations after the last fill ended. ``MAX_ROWS``
bounds the memory (about 450 bytes an event): users whose newest events are the oldest are
left to the database when there are more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from etl.pg import RecoveringPool
from etl.read.events import EventRow
from etl.read.jsonable import iso
from etl.read.user_pages import newest_rows

PER_USER = 51  # events held per user: pages of up to 50 (the default limit), and whether more
MAX_ROWS = 250_000  # events held at most (~110 MB of JSON); the rest from the database
STABLE_S = 2.0  # a version must have stayed this long before it is filled
GAP = 4.0  # after a fill of d seconds, the next starts d * GAP later at the earliest

_ENC = msgspec.json.Encoder()
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class _User:
    blob: bytes  # the encoded events, comma-separated
    ends: array[int]  # ends[k]: the end of event k in blob
    marks: tuple[tuple[dt.datetime, str], ...]  # each event's time and id, for next_before


@dataclass(frozen=True, slots=True)
class Pages:
    users: dict[str, _User]
    every_user: bool  # a user not in ``users`` has no events

    def page(self, user_id: str, limit: int) -> bytes | None:
        """The route's body for ``user_id``'s newest ``limit`` events, or None (ask the
        database)."""
        held = self.users.get(user_id)
        head = b'{"user_id":' + _ENC.encode(user_id) + b',"events":['
        if held is None:
            return head + b'],"next_before":null}' if self.every_user else None
        n = len(held.ends)
        if n > limit:
            at, event_id = held.marks[limit - 1]  # as etl.read.events.position writes it
            body, nxt = held.blob[: held.ends[limit - 1]], _ENC.encode(f"{iso(at)}/{event_id}")
        else:
            body, nxt = held.blob, b"null"
        return head + body + b'],"next_before":' + nxt + b"}"


def build(rows: list[Any], every_user: bool) -> Pages:
    """``rows`` (``etl.read.user_pages``: by user, newest first) as each user's bytes."""
    users: dict[str, _User] = {}
    start = 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and rows[end]["u"] == rows[start]["u"]:
            continue
        events = [_event(r) for r in rows[start:end]]
        encoded = [_ENC.encode(e) for e in events]
        ends, at = array("q"), -1
        for b in encoded:
            at += len(b) + 1
            ends.append(at)
        marks = tuple((e.occurred_at, e.id) for e in events)
        users[rows[start]["u"]] = _User(b",".join(encoded), ends, marks)
        start = end
    return Pages(users, every_user)


def _json(text: str) -> Any:
    """``json.loads(text)``, 5x faster: msgspec gives the same values, but refuses numbers
    beyond a float's range (jsonb keeps them), which json.loads makes infinite."""
    try:
        return _decode(text)
    except msgspec.ValidationError:
        return json.loads(text)


def _event(r: Any) -> EventRow:
    """As ``etl.read.events`` makes it from the same columns."""
    s = r["s"]
    return EventRow(
        id=r["id"],
        session_id=r["session_id"],
        type=r["type"],
        name=r["name"],
        occurred_at=r["occurred_at"],
        properties=_json(r["p"]),
        session=None if s is None else _json(s),
    )


class UserPages:
    """The pages of one data version at a time, filled in the background."""

    def __init__(
        self, *, max_rows: int = MAX_ROWS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_rows = max_rows
        self.clock = clock
        self._held: tuple[object, Pages] | None = None
        self._filling: asyncio.Task[None] | None = None
        self._seen: tuple[object, float] | None = None  # the version asked for, since when
        self._next_fill = -math.inf

    def page(self, db: RecoveringPool, version: object, user_id: str, limit: int) -> bytes | None:
        """The body from memory if ``version``'s pages are held (None: ask the database);
        starts filling them once the version has stayed ``STABLE_S``."""
        if self._held is not None and self._held[0] == version:
            return self._held[1].page(user_id, limit)
        now = self.clock()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
        elif now - self._seen[1] >= STABLE_S and now >= self._next_fill:
            self.start(db, version)
        return None

    def start(self, db: RecoveringPool, version: object) -> None:
        """Fill the pages of ``version`` in the background (unless a fill runs)."""
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self.fill(db, version))
            self._filling.add_done_callback(_retrieve)

    async def fill(self, db: RecoveringPool, version: object) -> None:
        t0 = self.clock()
        self._next_fill = math.inf  # one at a time
        try:
            async with db.connection() as conn:
                got = await newest_rows(conn, per_user=PER_USER, max_rows=self.max_rows)
            # in a thread: a second of encoding on a busy machine must not stop the loop
            pages = await asyncio.to_thread(build, got.rows, got.every_user)
            self._held = (version, pages)
        finally:
            self._next_fill = self.clock() + GAP * (self.clock() - t0)


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed fill (database down) is retried by a later request."""
    if not task.cancelled():
        task.exception()
