"""The newest events of every user in one pass, for `etl serve`'s in-memory user pages
(``etl.serve.userpages``): what ``etl.read.events.user_events(user)`` answers without
filters, for all users at once, in two queries instead of one per user.

First each user's *cut*: from ``rollup_user_hours`` (never ``events``), the oldest hour
needed for the user's newest ``per_user`` events (the hours whose newer hours hold fewer than
``per_user`` events). Users are taken by their cut, newest first, until ``max_rows`` events
would be held. Then one scan of ``events`` from the oldest cut taken, joined to the users by
id and cut, keeps each user's newest ``per_user`` rows (``row_number`` in (occurred_at, id)
order, as the per-user query pages). Both queries run in one REPEATABLE READ snapshot, so
the rollup and the rows agree. A user with fewer than ``per_user`` events is held whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from etl.pg import Conn
from etl.read.db import run_query

_CUTS = """
SELECT user_id, min(hour) AS since, least(sum(events)::int8, $1::int8) AS n
FROM (SELECT user_id, hour, events,
             (sum(events) OVER (PARTITION BY user_id ORDER BY hour DESC))::int8 - events AS newer
      FROM rollup_user_hours) AS c
WHERE newer < $1::int8
GROUP BY user_id
ORDER BY since DESC, user_id
"""
_ROWS = """
SELECT user_id::text AS u, id::text AS id, session_id::text AS session_id, type, name,
       occurred_at, properties::text AS p, session::text AS s
FROM (SELECT e.user_id, e.id, e.session_id, e.type, e.name, e.occurred_at, e.properties,
             e.session, row_number() OVER (PARTITION BY e.user_id
                                           ORDER BY e.occurred_at DESC, e.id DESC) AS rn
      FROM unnest($1::uuid[], $2::timestamptz[]) AS c(user_id, since)
      JOIN events AS e ON e.user_id = c.user_id AND e.occurred_at >= c.since
      WHERE e.occurred_at >= $3) AS r
WHERE rn <= $4::int8
ORDER BY u, rn
"""


@dataclass(frozen=True, slots=True)
class NewestRows:
    rows: list[Any]  # u, id, session_id, type, name, occurred_at, p, s: by user, newest first
    users: int  # users held (each with min(their events, per_user) rows)
    every_user: bool  # every user with events is held (a user not held has none)


async def _read(conn: Conn, per_user: int, max_rows: int, timeout_ms: int) -> NewestRows:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # a background load, not a request: it may take longer than a request's timeout
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        await conn.execute("SET LOCAL work_mem = '64MB'")  # the rows' sort, in memory
        cuts = await conn.fetch(_CUTS, per_user)
        users: list[Any] = []
        sinces: list[dt.datetime] = []
        total = 0
        for c in cuts:
            if total + c["n"] > max_rows:
                break
            total += c["n"]
            users.append(c["user_id"])
            sinces.append(c["since"])
        rows = await conn.fetch(_ROWS, users, sinces, min(sinces), per_user) if users else []
    return NewestRows(list(rows), len(users), len(users) == len(cuts))


async def newest_rows(
    target: Conn | str, *, per_user: int, max_rows: int, timeout_ms: int = 60_000
) -> NewestRows:
    """Each user's newest ``per_user`` events (as many users as ``max_rows`` allows, those
    whose newest events are the most recent first). Raises SinkError."""
    return await run_query(
        target, "reading the users' newest events", _read, per_user, max_rows, timeout_ms
    )
