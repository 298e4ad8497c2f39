"""`etl series`: event counts per hour or day from ``rollup_hourly``, zero-filled.

Never touches ``events``: a month of hourly counts for every type is ~6,000 rollup rows, read
in milliseconds on any table size. Buckets are UTC hours or days, half-open
``[start, start + width)``; a bucket with no events is 0 (so statistics and forecasts see
the quiet hours too). Without ``since``/``until`` the range is the data's.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

from etl.pg import Conn
from etl.read.db import run_query

Bucket = Literal["hour", "day"]
WIDTH = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
ALL = "all"  # the name of the summed series
USERS = "distinct_users"  # the series of distinct users per bucket (all types)


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # an event type, or "all"
    values: tuple[int, ...]  # one per bucket of ``SeriesSet.buckets``


@dataclass(frozen=True, slots=True)
class SeriesSet:
    bucket: Bucket
    buckets: tuple[dt.datetime, ...]  # bucket starts (UTC)
    series: tuple[Series, ...]
    series_held: int  # event types with any rollup row (in the whole table)


def floor(t: dt.datetime, bucket: Bucket) -> dt.datetime:
    t = t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if bucket == "day" else t


def ceil(t: dt.datetime, bucket: Bucket) -> dt.datetime:
    f = floor(t, bucket)
    return f if f == t else f + WIDTH[bucket]


async def _read(
    conn: Conn,
    bucket: Bucket,
    types: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    total: bool,
    users: bool,
) -> SeriesSet:
    held = await conn.fetchrow(
        "SELECT count(DISTINCT type) AS n, min(hour) AS lo, max(hour) AS hi FROM rollup_hourly"
    )
    assert held is not None
    lo = floor(since, bucket) if since else (floor(held["lo"], bucket) if held["lo"] else None)
    hi = (
        ceil(until, bucket)
        if until
        else (floor(held["hi"], bucket) + WIDTH[bucket] if held["hi"] else None)
    )
    if lo is None or hi is None or lo >= hi:
        empty = (ALL,) if total or not types else types
        return SeriesSet(bucket, (), tuple(Series(n, ()) for n in empty), int(held["n"]))
    width = WIDTH[bucket]
    # one row per type with two arrays (bucket index, events): 8 rows instead of thousands
    index = "floor((extract(epoch FROM hour) - $3) / $4)::int"
    args: list[Any] = [lo, hi, lo.timestamp(), width.total_seconds()]
    where = "hour >= $1 AND hour < $2"
    if types:
        args.append(list(types))
        where += " AND type = ANY($5::text[])"
    rows = await conn.fetch(
        f"SELECT type, array_agg({index}) AS i, array_agg(events) AS n FROM rollup_hourly"
        f" WHERE {where} GROUP BY type",
        *args,
    )
    count = math.ceil((hi - lo) / width)
    buckets = tuple(lo + i * width for i in range(count))
    names = list(types) if types else sorted(r["type"] for r in rows)
    values: dict[str, list[int]] = {n: [0] * count for n in names}
    for r in rows:
        v = values[r["type"]]
        for i, n in zip(r["i"], r["n"], strict=True):
            v[i] += n
    if total:
        summed = [sum(col) for col in zip(*values.values(), strict=True)] if values else [0] * count
        out: tuple[Series, ...] = (Series(ALL, tuple(summed)),)
    else:
        out = tuple(Series(n, tuple(v)) for n, v in values.items())
    if users:
        # exact: distinct ids over the bucket's per-hour user rows, never a sum of hours
        distinct = [0] * count
        for r in await conn.fetch(
            f"SELECT {index} AS b, count(DISTINCT user_id) AS n FROM rollup_user_hours"
            " WHERE hour >= $1 AND hour < $2 GROUP BY 1",
            *args[:4],
        ):
            distinct[r["b"]] = int(r["n"])
        out += (Series(USERS, tuple(distinct)),)
    return SeriesSet(bucket, buckets, out, int(held["n"]))


async def read_series(
    target: Conn | str,
    *,
    bucket: Bucket = "hour",
    types: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    total: bool = False,
    users: bool = False,
) -> SeriesSet:
    """Counts per bucket for ``types`` (every type held when empty), one series each, or
    their sum as one series "all" when ``total``; ``users`` adds the series
    "distinct_users" (exact distinct user ids per bucket, all types)."""
    return await run_query(
        target, "reading the series", _read, bucket, types, since, until, total, users
    )


async def _count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(DISTINCT type) FROM rollup_hourly") or 0)


async def count_series(target: Conn | str) -> int:
    """How many series (event types) the rollups hold."""
    return await run_query(target, "counting the series", _count)
