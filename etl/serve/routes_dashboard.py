"""``GET /``: the dashboard, drawn from the same read side as the API routes."""

from __future__ import annotations

from aiohttp import web

from etl.read.runs import read_runs
from etl.read.status import read_status
from etl.serve.app import CTX
from etl.serve.dashboard import DashboardData, render


async def dashboard(request: web.Request) -> web.Response:
    async with request.app[CTX].db.connection() as conn:
        data = DashboardData(snapshot=await read_status(conn), runs=await read_runs(conn, limit=10))
    return web.Response(text=render(data), content_type="text/html", charset="utf-8")


def register(app: web.Application) -> None:
    app.router.add_get("/", dashboard)
