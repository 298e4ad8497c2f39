"""`etl series`: counts per hour/day from the rollups, zero-filled; stats, forecast, formats."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.errors import ExitCode
from etl.read.series import read_series
from etl.read.stats import Series, stats
from tests.fixtures_db import run_sync
from tests.read_data import T0, USERS, event, load, mixed

H = dt.timedelta(hours=1)


async def test_hours_zero_filled_and_days(db_url: str) -> None:
    """Hours without events are 0; day buckets sum their hours; --total sums the types."""
    recs = [
        event(1, at=T0, type="click"),
        event(2, at=T0 + 10 * H, type="click"),
        event(3, at=T0 + 10 * H, type="page_view"),
        event(4, at=T0 + 30 * H, type="click"),
    ]
    await load(db_url, [recs])
    hourly = await read_series(db_url, types=("click",), since=T0, until=T0 + 12 * H)
    assert hourly.buckets[0] == T0 and len(hourly.buckets) == 12
    assert hourly.series[0].values == (1,) + (0,) * 9 + (1, 0)
    days = await read_series(db_url, bucket="day")
    assert days.buckets == (T0, T0 + 24 * H)
    assert {s.name: s.values for s in days.series} == {"click": (2, 1), "page_view": (1, 0)}
    assert days.series_held == 2
    tot = await read_series(db_url, bucket="day", total=True)
    assert [(s.name, s.values) for s in tot.series] == [("all", (3, 1))]


def test_stats_of_known_values() -> None:
    """count, min, max, mean, p50/p95 (linear interpolation) and the least-squares trend."""
    s = stats(Series("x", (1, 2, 3, 4, 10)))
    assert (s.count, s.min, s.max, s.mean, s.p50) == (20, 1, 10, 4.0, 3)
    assert s.p95 == pytest.approx(8.8)  # 4 + (10 - 4) * 0.8, as numpy.percentile
    assert s.trend_per_bucket == 2.0  # slope of the least-squares line


def test_cli_table_csv_json_and_forecast(db_url: str) -> None:
    """The table has one column per type; --csv is long format; --json carries the stats;
    --forecast needs two days of hourly history (exit 2 otherwise) and then gives H points
    with low <= value <= high."""
    run_sync(load(db_url, [mixed(200)]))  # 200 events every 7 minutes: ~23 hours
    env = {"DATABASE_URL": db_url}
    out = CliRunner().invoke(app, ["series", "-t", "click", "-t", "error"], env=env)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split() == ["hour", "(UTC)", "click", "error"]
    csv = CliRunner().invoke(app, ["series", "--csv", "--bucket", "day"], env=env).output
    assert csv.splitlines()[0] == "bucket,series,kind,value,low,high"
    assert "2026-01-01T00:00:00Z,click,count,40,," in csv
    doc = json.loads(CliRunner().invoke(app, ["series", "--stats", "--json"], env=env).output)
    assert {s["name"]: s["count"] for s in doc["stats"]}["purchase"] == 40
    short = CliRunner().invoke(app, ["series", "--forecast", "6"], env=env)
    assert short.exit_code == ExitCode.CONFIG and "needs at least 48 hours" in short.output
    step = dt.timedelta(minutes=20)
    run_sync(load(db_url, [mixed(300, start=T0 + 24 * H, step=step)]))  # ids overlap: 100 new
    doc = json.loads(
        CliRunner().invoke(app, ["series", "--total", "--forecast", "6", "--json"], env=env).output
    )
    points = doc["forecasts"][0]["points"]
    assert len(points) == 6
    assert all(p["low"] <= p["value"] <= p["high"] for p in points)


async def test_distinct_users_are_exact_per_bucket(db_url: str) -> None:
    """A user active in two hours of a day counts once for the day (never a sum of hours);
    events without a user are not users."""
    a, b = USERS[0], USERS[1]
    recs = [
        event(1, at=T0, user=a),
        event(2, at=T0 + H, user=a),
        event(3, at=T0 + H, user=b),
        event(4, at=T0 + 2 * H, user=None),
    ]
    await load(db_url, [recs])
    hourly = await read_series(db_url, total=True, users=True)
    assert {s.name: s.values for s in hourly.series}["distinct_users"] == (1, 2, 0)
    daily = await read_series(db_url, bucket="day", total=True, users=True)
    assert {s.name: s.values for s in daily.series} == {"all": (4,), "distinct_users": (2,)}
