"""`etl top users|types|pages --by events|purchases`: the largest, in a stable order.

From the rollups (``rollup_user_hours``, ``rollup_hourly``, ``rollup_page_hours``), never
from ``events``. Order: the chosen measure descending, then the other measure descending,
then the key ascending, so ties never reorder between runs. A range counts whole UTC hours
(``since`` rounded down, ``until`` up).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from etl.pg import Conn
from etl.read.db import run_query
from etl.read.series import ceil, floor
from etl.sink.rollups import PURCHASE

What = Literal["users", "types", "pages"]
By = Literal["events", "purchases"]

_SOURCES: dict[str, tuple[str, str, str]] = {
    # key expression, purchases expression, table
    # uuid keys sort like their text; int4 sums (bigint results) avoid numeric arithmetic
    "users": ("user_id", "sum(purchases::int4)", "rollup_user_hours"),
    "types": ("type", f"sum(events::int4) FILTER (WHERE type = '{PURCHASE}')", "rollup_hourly"),
    "pages": ("page", "sum(purchases::int4)", "rollup_page_hours"),
}


@dataclass(frozen=True, slots=True)
class TopRow:
    rank: int
    key: str
    events: int
    purchases: int


@dataclass(frozen=True, slots=True)
class TopList:
    what: str
    by: str
    rows: tuple[TopRow, ...]


async def _top(
    conn: Conn, what: What, by: By, limit: int, since: dt.datetime | None, until: dt.datetime | None
) -> TopList:
    key, purchases, table = _SOURCES[what]
    other = "purchases" if by == "events" else "events"
    args: list[Any] = [limit]
    where = []
    if since is not None:
        args.append(floor(since, "hour"))
        where.append(f"hour >= ${len(args)}")
    if until is not None:
        args.append(ceil(until, "hour"))
        where.append(f"hour < ${len(args)}")
    sql = (
        f"SELECT {key} AS k, sum(events::int4) AS events,"
        f" coalesce({purchases}, 0)::bigint AS purchases FROM {table}"
        f"{' WHERE ' + ' AND '.join(where) if where else ''}"
        f" GROUP BY 1 ORDER BY {by} DESC, {other} DESC, k ASC LIMIT $1"
    )
    rows = await conn.fetch(sql, *args)
    return TopList(
        what,
        by,
        tuple(
            TopRow(i, str(r["k"]), int(r["events"]), int(r["purchases"]))
            for i, r in enumerate(rows, start=1)
        ),
    )


async def read_top(
    target: Conn | str,
    what: What,
    *,
    by: By = "events",
    limit: int = 10,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> TopList:
    return await run_query(target, f"reading the top {what}", _top, what, by, limit, since, until)
