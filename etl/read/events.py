"""`etl events --user ID`: one user's events, newest first, keyset-paged.

Served by the index ``events_user_idx (user_id, occurred_at)`` (ties in a millisecond sorted
by id on top): a page is an
index range scan of ``limit + 1`` entries whatever the table's size. ``next_before`` is the
position of the page's last event (``TIME/ID``); passing it as ``before`` gives the next
page, which starts strictly after it in (occurred_at, id) order, so no event is repeated or
skipped even when several share a millisecond.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from etl.pg import Conn
from etl.read.db import run_query
from etl.read.jsonable import iso

_COLS = "id, session_id, type, name, occurred_at, properties::text AS p, session::text AS s"


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    session_id: str | None
    type: str
    name: str | None
    occurred_at: dt.datetime
    properties: Any
    session: Any


@dataclass(frozen=True, slots=True)
class EventsPage:
    user_id: str
    events: tuple[EventRow, ...]
    next_before: str | None  # pass as ``before`` for the next page; None: this was the last


def position(row: EventRow) -> str:
    return f"{iso(row.occurred_at)}/{row.id}"


async def _user_events(
    conn: Conn,
    user_id: str,
    types: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    before: tuple[dt.datetime, str | None] | None,
    limit: int,
) -> EventsPage:
    args: list[Any] = [user_id, limit + 1]
    where = ["user_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if types:
        where.append(f"type = ANY({arg(list(types))}::text[])")
    if since is not None:
        where.append(f"occurred_at >= {arg(since)}")
    if until is not None:
        where.append(f"occurred_at < {arg(until)}")
    if before is not None:
        if before[1] is None:
            where.append(f"occurred_at < {arg(before[0])}")
        else:
            where.append(f"(occurred_at, id) < ({arg(before[0])}, {arg(before[1])}::uuid)")
    sql = (
        f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)}"
        " ORDER BY occurred_at DESC, id DESC LIMIT $2"
    )
    rows = await conn.fetch(sql, *args)
    events = tuple(
        EventRow(
            id=str(r["id"]),
            session_id=None if r["session_id"] is None else str(r["session_id"]),
            type=r["type"],
            name=r["name"],
            occurred_at=r["occurred_at"],
            properties=json.loads(r["p"]),
            session=None if r["s"] is None else json.loads(r["s"]),
        )
        for r in rows[:limit]
    )
    more = len(rows) > limit
    return EventsPage(user_id, events, position(events[-1]) if more and events else None)


async def user_events(
    target: Conn | str,
    user_id: str,
    *,
    types: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before: tuple[dt.datetime, str | None] | None = None,
    limit: int = 50,
) -> EventsPage:
    """The newest ``limit`` events of ``user_id`` (optionally of ``types``, in
    ``[since, until)``, strictly older than ``before``)."""
    return await run_query(
        target,
        "reading the user's events",
        _user_events,
        user_id,
        types,
        since,
        until,
        before,
        limit,
    )
