"""`etl events --user ID`: one user's events, newest first, keyset-paged.

One statement on ``events_user_time_idx (user_id, occurred_at, id)``: the index range of the
user, walked backwards from ``before`` (or ``until``), stopping after ``limit + 1`` rows; only
those rows are fetched from the table. No transaction, no second query: `etl serve` runs it
per ``GET /events/{user_id}`` (a cached prepared statement per filter shape).

``next_before`` is the position of the page's last event (``TIME/ID``); passing it as
``before`` gives the next page, which starts strictly after it in (occurred_at, id) order,
so no event is repeated or skipped even when several share a millisecond.
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


_ORDER = "ORDER BY occurred_at DESC, id DESC LIMIT $2"


def user_events_sql(types: bool, since: bool, until: bool, before: bool, before_id: bool) -> str:
    """The statement for one filter shape: $1 user, $2 limit, then (when given) the types
    array, since, until, before's time and id, in that order."""
    where = ["user_id = $1"]
    n = 2

    def arg() -> str:
        nonlocal n
        n += 1
        return f"${n}"

    if types:
        where.append(f"type = ANY({arg()}::text[])")
    if since:
        where.append(f"occurred_at >= {arg()}")
    if until:
        where.append(f"occurred_at < {arg()}")
    if before:
        if before_id:
            # a row comparison on the index's own columns: an index bound, not a filter
            where.append(f"(occurred_at, id) < ({arg()}, {arg()}::uuid)")
        else:
            where.append(f"occurred_at < {arg()}")
    return f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} {_ORDER}"


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
    if types:
        args.append(list(types))
    args += [t for t in (since, until) if t is not None]
    if before is not None:
        args += [before[0]] if before[1] is None else [before[0], before[1]]
    sql = user_events_sql(
        bool(types),
        since is not None,
        until is not None,
        before is not None,
        before is not None and before[1] is not None,
    )
    rows = await conn.fetch(sql, *args)
    return _page(user_id, rows, limit)


def _page(user_id: str, rows: list[Any], limit: int) -> EventsPage:
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
