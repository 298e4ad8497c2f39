"""Every row of ``rollup_user_hours`` (a user's events and purchases per UTC hour), for
`etl serve`'s in-memory top users (``etl.serve.topstore``). A rollup, never ``events``."""

from __future__ import annotations

from etl.pg import Conn
from etl.read.db import run_query

# (user id as text, hour as epoch seconds, events, purchases), by user then hour
UserHour = tuple[str, float, int, int]


async def _rows(conn: Conn, cap: int) -> list[UserHour] | None:
    rows = await conn.fetch(
        "SELECT user_id::text AS u, extract(epoch FROM hour)::float8 AS h, events, purchases"
        " FROM rollup_user_hours ORDER BY user_id, hour LIMIT $1",
        cap + 1,
    )
    if len(rows) > cap:
        return None
    return [(r["u"], r["h"], int(r["events"]), int(r["purchases"])) for r in rows]


async def read_user_hours(target: Conn | str, *, cap: int) -> list[UserHour] | None:
    """All rows, or None when there are more than ``cap``. Raises SinkError."""
    return await run_query(target, "reading the user rollup", _rows, cap)
