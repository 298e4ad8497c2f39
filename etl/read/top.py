"""`etl top users|types|pages --by events|purchases`: the largest, in a stable order.

From the rollups, never from ``events``: users from ``rollup_users`` (one row per user) when
no range is asked or the range holds every hour loaded, else from ``rollup_user_hours``
(decided in the statement: one snapshot); types from ``rollup_hourly``, pages from
``rollup_page_hours``. Order: the chosen measure descending, then the other measure descending,
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


def _sql(what: What, by: By, where: list[str]) -> str:
    key, purchases, table = _SOURCES[what]
    other = "purchases" if by == "events" else "events"
    order = f" ORDER BY {by} DESC, {other} DESC, k ASC LIMIT $1"
    ranged = (
        f"SELECT {key} AS k, sum(events::int4) AS events,"
        f" coalesce({purchases}, 0)::bigint AS purchases FROM {table}"
        f"{' WHERE ' + ' AND '.join(where) if where else ''} GROUP BY 1"
    )
    if what != "users":
        return ranged + order
    totals = "SELECT user_id AS k, events, purchases FROM rollup_users"
    if not where:
        return totals + order
    # the range holds every hour loaded: the totals are its answer
    holds = (
        "(SELECT coalesce(($2::timestamptz IS NULL OR min(hour) >= $2)"
        " AND ($3::timestamptz IS NULL OR max(hour) < $3), true) FROM rollup_hourly)"
    )
    return (
        f"SELECT * FROM ({totals} WHERE {holds} UNION ALL"
        f" SELECT * FROM ({ranged}) AS r WHERE NOT {holds}) AS u{order}"
    )


async def _top(
    conn: Conn, what: What, by: By, limit: int, since: dt.datetime | None, until: dt.datetime | None
) -> TopList:
    lo = floor(since, "hour") if since is not None else None
    hi = ceil(until, "hour") if until is not None else None
    args: list[Any] = [limit]
    where = []
    if what == "users" and (lo is not None or hi is not None):
        args += [lo, hi]  # $2 and $3 both named by the statement's test of the range
        where = [w for w, v in (("hour >= $2", lo), ("hour < $3", hi)) if v is not None]
    else:
        for op, v in ((">=", lo), ("<", hi)):
            if v is not None:
                args.append(v)
                where.append(f"hour {op} ${len(args)}")
    rows = await conn.fetch(_sql(what, by, where), *args)
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
