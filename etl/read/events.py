"""`etl events --user ID`: one user's events, newest first, keyset-paged.

No index on ``events`` is keyed by user: one costs the load ~1.5-2 s of PostgreSQL CPU per
million events (its inserts land on random pages). The user's hours come from the rollup
instead (``rollup_user_hours``, indexed by (user_id, hour): one row per user and hour), and
each hour is one range scan of ``events_time_user_idx (occurred_at, user_id)``, whose user
column is checked in the index: only the user's rows are fetched. Hours are read newest
first in growing groups (2, 8, 32, ...) until the page is full, all in one REPEATABLE READ
snapshot, so the rollup and the rows agree.

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


_HOURS = (
    "SELECT hour FROM rollup_user_hours WHERE user_id = $1"
    " AND hour <= coalesce($2::timestamptz, 'infinity')"
    " AND hour >= date_trunc('hour', coalesce($3::timestamptz, '-infinity'), 'UTC')"
    " ORDER BY hour DESC"
)
_FIRST_GROUP, _GROWTH = 2, 4


async def _user_events(
    conn: Conn,
    user_id: str,
    types: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    before: tuple[dt.datetime, str | None] | None,
    limit: int,
) -> EventsPage:
    args: list[Any] = [user_id, limit + 1, None]  # $3: the group of hours
    where = [
        "e.user_id = $1",
        "e.occurred_at >= h.hour",
        "e.occurred_at < h.hour + interval '1 hour'",
    ]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if types:
        where.append(f"e.type = ANY({arg(list(types))}::text[])")
    if since is not None:
        where.append(f"e.occurred_at >= {arg(since)}")
    if until is not None:
        where.append(f"e.occurred_at < {arg(until)}")
    if before is not None:
        if before[1] is None:
            where.append(f"e.occurred_at < {arg(before[0])}")
        else:
            where.append(f"(e.occurred_at, e.id) < ({arg(before[0])}, {arg(before[1])}::uuid)")
    # The LIMIT inside the lateral keeps the plan a loop over the hours: without it the
    # planner may walk the whole index backwards for the user (seconds on 3M rows).
    order = "ORDER BY occurred_at DESC, id DESC LIMIT $2"
    sql = (
        f"SELECT {_COLS} FROM unnest($3::timestamptz[]) AS h(hour) CROSS JOIN LATERAL"
        f" (SELECT * FROM events AS e WHERE {' AND '.join(where)} {order}) AS e {order}"
    )
    newest = min((t for t in (until, before[0] if before else None) if t is not None), default=None)
    rows: list[Any] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        hours = [r[0] for r in await conn.fetch(_HOURS, user_id, newest, since)]
        group = _FIRST_GROUP
        while hours and len(rows) <= limit:
            args[1], args[2] = limit + 1 - len(rows), hours[:group]
            rows += await conn.fetch(sql, *args)
            hours, group = hours[group:], group * _GROWTH
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
