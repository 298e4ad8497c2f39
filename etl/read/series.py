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
    key = "hour" if bucket == "hour" else "date_trunc('day', hour, 'UTC')"
    args: list[Any] = [lo, hi]
    where = "hour >= $1 AND hour < $2"
    if types:
        args.append(list(types))
        where += " AND type = ANY($3::text[])"
    rows = await conn.fetch(
        f"SELECT {key} AS b, type, sum(events)::bigint AS n FROM rollup_hourly"
        f" WHERE {where} GROUP BY 1, 2",
        *args,
    )
    width = WIDTH[bucket]
    count = math.ceil((hi - lo) / width)
    buckets = tuple(lo + i * width for i in range(count))
    names = list(types) if types else sorted({r["type"] for r in rows})
    values: dict[str, list[int]] = {n: [0] * count for n in names}
    for r in rows:
        values[r["type"]][(r["b"] - lo) // width] += int(r["n"])
    if total:
        summed = [sum(col) for col in zip(*values.values(), strict=True)] if values else [0] * count
        out: tuple[Series, ...] = (Series(ALL, tuple(summed)),)
    else:
        out = tuple(Series(n, tuple(v)) for n, v in values.items())
    return SeriesSet(bucket, buckets, out, int(held["n"]))


async def read_series(
    target: Conn | str,
    *,
    bucket: Bucket = "hour",
    types: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    total: bool = False,
) -> SeriesSet:
    """Counts per bucket for ``types`` (every type held when empty), one series each, or
    their sum as one series "all" when ``total``."""
    return await run_query(target, "reading the series", _read, bucket, types, since, until, total)
