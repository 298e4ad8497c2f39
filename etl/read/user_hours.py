"""Every row of ``rollup_user_hours`` (a user's events and purchases per UTC hour), for
`etl serve`'s in-memory top users (``etl.serve.topstore``). A rollup, never ``events``."""

from __future__ import annotations

from etl.pg import Conn
from etl.read.db import run_query

# (user id as text, hour as epoch seconds, events, purchases)
UserHour = tuple[str, float, int, int]


async def _rows(conn: Conn, cap: int, timeout_ms: int) -> list[UserHour] | None:
    async with conn.transaction(readonly=True):
        # a background load, not a request: it may take longer than a request's timeout
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        rows = await conn.fetch(
            "SELECT user_id::text AS u, extract(epoch FROM hour)::float8 AS h, events,"
            " purchases FROM rollup_user_hours LIMIT $1",
            cap + 1,
        )
    if len(rows) > cap:
        return None
    return [(r["u"], r["h"], int(r["events"]), int(r["purchases"])) for r in rows]


async def read_user_hours(
    target: Conn | str, *, cap: int, timeout_ms: int = 60_000
) -> list[UserHour] | None:
    """All rows (in no order), or None when there are more than ``cap``. Raises SinkError."""
    return await run_query(target, "reading the user rollup", _rows, cap, timeout_ms)
