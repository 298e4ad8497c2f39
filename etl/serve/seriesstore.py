"""Every type's whole series in memory, read once per data version and cut per request.

The series routes ask ``rollup_hourly`` for one range after another (a dashboard, a client
paging through time): each answer is a slice of the same few thousand rollup rows. So the
server reads the whole series of every type once per bucket width and data version
(``etl.read.series.read_series`` without a range: the same zero-filled buckets) and answers
any ``(types, since, until)`` by slicing it in memory, exactly as ``read_series`` would have
answered from the database: ``slice_set`` keeps its rules (buckets floored/ceiled to the
width, the data's own range when a bound is absent, zeros outside the data, an unknown type
all zeros, without types the types with events in the range; a test compares the two). A
data set too large to hold (``MAX_VALUES``) is read per request as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from etl.pg import RecoveringPool
from etl.read.series import (
    ALL,
    WIDTH,
    Bucket,
    Series,
    SeriesSet,
    ceil,
    count_series,
    floor,
    read_series,
)

MAX_VALUES = 2_000_000  # types x buckets held in memory at most (~16 MB of ints)


def slice_set(
    full: SeriesSet, types: tuple[str, ...], since: dt.datetime | None, until: dt.datetime | None
) -> SeriesSet:
    """What ``read_series(bucket=full.bucket, types=types, since=since, until=until)`` answers,
    cut from ``full`` (``read_series`` of every type over the whole range)."""
    bucket = full.bucket
    width = WIDTH[bucket]
    data_lo = full.buckets[0] if full.buckets else None
    data_hi = full.buckets[-1] + width if full.buckets else None
    lo = floor(since, bucket) if since else data_lo
    hi = ceil(until, bucket) if until else data_hi
    if lo is None or hi is None or lo >= hi:
        return SeriesSet(
            bucket, (), tuple(Series(n, ()) for n in (types or (ALL,))), full.series_held
        )
    count = -(-(hi - lo) // width)
    buckets = tuple(lo + i * width for i in range(count))
    off = (lo - data_lo) // width if data_lo is not None else 0
    held = {s.name: _cut(s.values, off, count) for s in full.series}
    # without types: those with rows in the range (a rollup row always counts some events)
    names = list(dict.fromkeys(types)) if types else [n for n, v in held.items() if any(v)]
    zeros = (0,) * count
    out = tuple(Series(n, held.get(n, zeros)) for n in names)
    return SeriesSet(bucket, buckets, out, full.series_held)


def _cut(values: tuple[int, ...], off: int, count: int) -> tuple[int, ...]:
    """``values[off : off + count]``, zeros where that reaches outside ``values``."""
    if not values:
        return (0,) * count
    before = min(count, max(0, -off))
    inside = values[max(0, off) : max(0, off + count)]
    return (0,) * before + inside + (0,) * (count - before - len(inside))


class SeriesStore:
    """The whole series per bucket width, for one data version at a time."""

    def __init__(self) -> None:
        self._held: dict[Bucket, tuple[object, SeriesSet | None]] = {}
        self._locks: dict[Bucket, asyncio.Lock] = {}

    async def read(
        self,
        db: RecoveringPool,
        version: object | None,
        bucket: Bucket,
        types: tuple[str, ...],
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> SeriesSet:
        """The series, cut from memory when the whole set for ``version`` is (or can be)
        held; else read from the database. ``version`` None: always the database."""
        full = await self._full(db, version, bucket) if version is not None else None
        if full is None:
            async with db.connection() as conn:
                return await read_series(conn, bucket=bucket, types=types, since=since, until=until)
        return slice_set(full, types, since, until)

    async def count(self, db: RecoveringPool, version: object | None) -> int:
        """How many series (event types) the rollups hold."""
        full = await self._full(db, version, "hour") if version is not None else None
        if full is not None:
            return full.series_held
        async with db.connection() as conn:
            return await count_series(conn)

    async def _full(self, db: RecoveringPool, version: object, bucket: Bucket) -> SeriesSet | None:
        held = self._held.get(bucket)
        if held is not None and held[0] == version:
            return held[1]
        async with self._locks.setdefault(bucket, asyncio.Lock()):  # one read per version
            held = self._held.get(bucket)
            if held is not None and held[0] == version:
                return held[1]
            async with db.connection() as conn:
                full: SeriesSet | None = await read_series(conn, bucket=bucket)
            assert full is not None
            if len(full.buckets) * max(1, len(full.series)) > MAX_VALUES:
                full = None  # too large to hold: ranges are read from the database
            self._held[bucket] = (version, full)
            return full
