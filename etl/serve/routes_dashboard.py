"""``GET /``: the dashboard, drawn from the same read side as the API routes."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from etl.pg import Conn
from etl.read.findings import latest_anomalies
from etl.read.runs import read_runs
from etl.read.stats import series_report
from etl.read.status import read_status
from etl.read.top import read_top
from etl.read.views import StatusSnapshot
from etl.serve import svg
from etl.serve.app import CTX, ServeContext
from etl.serve.dashboard import DashboardData, render, render_charts
from etl.serve.topstore import top_users

WINDOW = dt.timedelta(days=7)  # the volume chart's span, ending at the newest data
FORECAST_H = 24


async def dashboard(request: web.Request) -> web.Response:
    """The page: the sync's state read now, the charts of the data drawn once per data
    version (they change only when the data does) and spliced in."""
    ctx = request.app[CTX]
    async with ctx.db.connection() as conn:
        data = DashboardData(snapshot=await read_status(conn), runs=await read_runs(conn, limit=10))
    charts = await _kept_charts(ctx) if data.snapshot.initialized else None
    return web.Response(text=render(data, charts), content_type="text/html", charset="utf-8")


async def _kept_charts(ctx: ServeContext) -> str:
    assert ctx.cache is not None
    # while new data's charts are drawn, the others are given the last ones
    return await ctx.cache.remember_data("dashboard:charts", lambda: _charts(ctx), stale_ok=True)


async def warm_charts(ctx: ServeContext) -> None:
    """Draw the charts of the current data ahead of the page's first request."""
    async with ctx.db.connection() as conn:
        initialized = (await read_status(conn)).initialized
    if initialized:
        await _kept_charts(ctx)


async def _charts(ctx: ServeContext) -> str:
    data = DashboardData(
        snapshot=StatusSnapshot(taken_at=dt.datetime.now(dt.UTC), initialized=True)
    )
    assert ctx.cache is not None
    version = await ctx.cache.version()
    held = ctx.top.users(ctx.db, version) if version is not None else None
    async with ctx.db.connection() as conn:
        await _volumes(conn, data)
        top = (
            top_users(held, "events", 10, None, None)
            if held is not None
            else await read_top(conn, "users", limit=10)
        )
    data.top_users = [(r.key, float(r.events)) for r in top.rows]
    return render_charts(data)


async def _volumes(conn: Conn, data: DashboardData) -> None:
    newest = await conn.fetchval("SELECT max(hour) FROM rollup_hourly")
    if newest is None:
        return
    since = newest - WINDOW + dt.timedelta(hours=1)
    by_type = await series_report(conn, since=since)
    b = by_type.data.buckets
    data.series = [
        svg.Series(s.name, list(zip(b, map(float, s.values), strict=True)))
        for s in by_type.data.series
    ]
    try:
        total = await series_report(conn, since=since, total=True, horizon=FORECAST_H)
        f = total.forecasts[0]
        data.series.append(
            svg.Series("all", list(zip(b, map(float, total.data.series[0].values), strict=True)))
        )
        data.bands = [svg.Band("all", [(p.bucket, p.value, p.low, p.high) for p in f.points])]
    except ValueError as exc:
        data.notes.append(f"no forecast: {exc}")
    found = await latest_anomalies(conn, since)
    values = {s.name: dict(s.points) for s in data.series}
    data.anomalies = [
        svg.Marker(
            a.series,
            a.bucket,
            values.get(a.series, {}).get(a.bucket, a.value),
            f"{a.series} {a.direction} at {a.bucket:%Y-%m-%d %H:%M} (z={a.zscore:.1f})",
        )
        for a in found
    ]


def register(app: web.Application) -> None:
    app.router.add_get("/", dashboard)
