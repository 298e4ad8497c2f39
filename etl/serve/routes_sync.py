"""Routes about the sync itself: /health, /status, /metrics, /openapi.json."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from etl.errors import SinkError
from etl.read.health import run_checks
from etl.read.status import read_status
from etl.read.views import snapshot_to_json
from etl.serve.app import CTX, ServeContext


async def health(request: web.Request) -> web.Response:
    """What `etl health --json` judges, over HTTP: 200 when the database answers, the API (if
    configured) accepts us and the sync is healthy (the last run neither failed nor ended
    incomplete, a running run's heartbeat is fresh); else 503 with the problems named."""
    ctx = request.app[CTX]
    doc: dict[str, Any] = {"status": "ok", "database": "ok", "api": "not configured"}
    problems: list[str] = []
    try:
        async with ctx.db.connection() as conn:
            snapshot = await read_status(conn)
        checks = run_checks(snapshot if snapshot.initialized else None, stale_after_s=60.0)
        problems += [c.detail for c in checks if not c.ok]
        doc["last_run"] = checks[0].detail
    except SinkError as exc:
        doc["database"] = "error"
        problems.append(f"database unreachable: {exc}")
    if ctx.api_check is not None:
        doc["api"], detail = await ctx.api_check()
        if doc["api"] == "error":
            problems.append(detail)
    doc["dataset"] = ctx.dataset
    doc["problems"] = problems
    if problems:
        doc["status"] = "degraded"
    return web.json_response(doc, status=200 if not problems else 503)


async def status(request: web.Request) -> web.Response:
    """What `etl status --json` prints."""
    async with request.app[CTX].db.connection() as conn:
        snapshot = await read_status(conn)
    return web.json_response(snapshot_to_json(snapshot))


def _gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]
    return lines


async def _sync_lines(ctx: ServeContext) -> list[str]:
    lines: list[str] = []
    try:
        async with ctx.db.connection() as conn:
            s = await read_status(conn)
        up = 1.0
        lines += _gauge("etl_events_loaded", "Events loaded (progress counters).", [("", s.loaded)])
        if s.expected_total is not None:
            lines += _gauge(
                "etl_events_expected", "Events the API reported.", [("", s.expected_total)]
            )
        running = 1.0 if s.run is not None and s.run.status == "running" else 0.0
        lines += _gauge("etl_run_in_progress", "1 while an ingest runs.", [("", running)])
        lines += _gauge(
            "etl_shards",
            "Shards by status.",
            [(f'{{status="{st}"}}', s.shard_count(st)) for st in ("pending", "running", "done")],
        )
    except SinkError:
        up = 0.0
    lines += _gauge("etl_database_up", "1 when the database answered this scrape.", [("", up)])
    return lines


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: the server's requests (with several workers summed over them)
    and the sync (``etl_database_up`` says whether the database answered); kept the cache
    TTL (1 s) like the other live answers, the other workers' part at most a second older."""
    ctx = request.app[CTX]
    assert ctx.cache is not None
    lines = [*await ctx.cache.remember("metrics:sync", lambda: _sync_lines(ctx))]  # a copy
    others: list[dict[str, Any]] = []
    if ctx.peers is not None:  # their files change once a second: read them that often
        peers = ctx.peers

        async def read_peers() -> list[dict[str, Any]]:
            return peers.others()

        others = await ctx.cache.remember("metrics:peers", read_peers)
    lines += _gauge(
        "etl_serve_workers",
        "Server processes whose counts are summed here.",
        [("", 1 + len(others))],
    )
    lines += _gauge(
        "etl_serve_warm",
        "Server processes whose start-up fill (charts, in-memory stores) has ended.",
        [("", int(ctx.warm) + sum(1 for o in others if o.get("warm")))],
    )
    telemetry = ctx.telemetry.merged(o["telemetry"] for o in others) if others else ctx.telemetry
    body = (
        "\n".join(lines) + "\n" + telemetry.render() + ctx.cache.render(o["cache"] for o in others)
    )
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    from etl.serve.openapi import document

    return web.json_response(document())


def register(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
