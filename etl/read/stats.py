"""Statistics and forecasts of a series (pure functions over ``etl.read.series.Series``)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from etl import holtwinters
from etl.pg import Conn
from etl.read.series import WIDTH, Bucket, Series, SeriesSet, read_series

SEASON = {"hour": 24, "day": 7}  # daily seasonality for hours, weekly for days
FIT_BUCKETS = {"hour": 24 * 14, "day": 7 * 8}  # the history a forecast is fitted on


@dataclass(frozen=True, slots=True)
class Stats:
    name: str
    buckets: int
    count: int  # events over the range
    min: int
    max: int
    mean: float
    p50: float
    p95: float
    trend_per_bucket: float  # least-squares slope
    trend_pct: float | None  # fitted change first -> last bucket, in % of the first


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    bucket: dt.datetime
    value: float
    low: float  # 95 % interval
    high: float


@dataclass(frozen=True, slots=True)
class Forecast:
    name: str
    period: int
    alpha: float
    beta: float
    gamma: float
    sigma: float
    points: tuple[ForecastPoint, ...]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    i = int(pos)
    j = min(i + 1, len(sorted_values) - 1)
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * (pos - i)


def stats(s: Series) -> Stats:
    v = s.values
    n = len(v)
    if n == 0:
        return Stats(s.name, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, None)
    ordered = sorted(v)
    mean = sum(v) / n
    xm = (n - 1) / 2
    sxx = sum((i - xm) ** 2 for i in range(n))
    slope = sum((i - xm) * (y - mean) for i, y in enumerate(v)) / sxx if sxx else 0.0
    first = mean - slope * xm
    pct = (slope * (n - 1)) / first * 100 if first > 0 else None
    return Stats(
        s.name,
        n,
        sum(v),
        ordered[0],
        ordered[-1],
        mean,
        percentile(ordered, 0.5),
        percentile(ordered, 0.95),
        slope,
        pct,
    )


def forecast(s: Series, last_bucket: dt.datetime, bucket: Bucket, horizon: int) -> Forecast:
    """Holt-Winters on the last ``FIT_BUCKETS`` buckets; raises ValueError with too little
    history (two seasons)."""
    m = SEASON[bucket]
    y = [float(x) for x in s.values[-FIT_BUCKETS[bucket] :]]
    if len(y) < 2 * m:
        raise ValueError(
            f"a forecast of {s.name!r} needs at least {2 * m} {bucket}s of history, has {len(y)}"
        )
    f = _fit(tuple(y), m)
    width = WIDTH[bucket]
    points = tuple(
        ForecastPoint(last_bucket + p.step * width, p.value, p.low, p.high)
        for p in holtwinters.forecast(f, horizon)
    )
    return Forecast(s.name, m, f.alpha, f.beta, f.gamma, f.sigma, points)


@functools.lru_cache(maxsize=256)
def _fit(y: tuple[float, ...], m: int) -> holtwinters.Fit:
    """The fit of exactly these points (a pure function, so remembered: `etl serve` is asked
    for the same series' forecast over and over, and ranges that end alike fit the same)."""
    return holtwinters.fit(y, m)


@dataclass(frozen=True, slots=True)
class SeriesReport:
    data: SeriesSet
    stats: tuple[Stats, ...] = ()
    forecasts: tuple[Forecast, ...] = ()


async def series_report(
    target: Conn | str,
    *,
    bucket: Bucket = "hour",
    types: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    total: bool = False,
    with_stats: bool = False,
    horizon: int = 0,
    users: bool = False,
) -> SeriesReport:
    """The series, and on request their statistics and a ``horizon``-bucket forecast
    (``ValueError`` when a series is too short to forecast)."""
    data = await read_series(
        target, bucket=bucket, types=types, since=since, until=until, total=total, users=users
    )
    return report_of(data, with_stats=with_stats, horizon=horizon)


def report_of(data: SeriesSet, *, with_stats: bool = False, horizon: int = 0) -> SeriesReport:
    """``data`` with, on request, its statistics and forecast (see ``series_report``)."""
    st = tuple(stats(s) for s in data.series) if with_stats else ()
    fc: tuple[Forecast, ...] = ()
    if horizon:
        if not data.buckets:
            raise ValueError("no data in the range to forecast from")
        fc = tuple(forecast(s, data.buckets[-1], data.bucket, horizon) for s in data.series)
    return SeriesReport(data, st, fc)
