"""Routes over the read side: a user's events, series (stats, forecast, purge), anomalies and
top lists. Same functions as the CLI commands (etl.read), same validation (a bad value is a
400 naming the parameter), JSON from ``etl.read.jsonable``; every list capped by the row cap.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, cast

import msgspec
from aiohttp import web

from etl.errors import ConfigError
from etl.read import params
from etl.read.jsonable import jsonable
from etl.serve.app import CTX, ServeContext
from etl.serve.envelope import ApiError
from etl.serve.userpages import PER_USER

_ENCODER = msgspec.json.Encoder()


def _json(value: Any, status: int = 200) -> web.Response:
    """``value`` (the read side's dataclasses) as JSON: what ``jsonable`` makes of it, encoded
    in C (a 14-day hourly series of every type: 0.5 ms instead of 15). The read side's times
    are UTC, so msgspec's RFC 3339 text is ``jsonable``'s (a test compares the two)."""
    return web.Response(body=_ENCODER.encode(value), status=status, content_type="application/json")


def _time(request: web.Request, name: str) -> dt.datetime | None:
    text = request.query.get(name)
    return params.parse_time(text, name) if text else None


def _range(request: web.Request) -> tuple[dt.datetime | None, dt.datetime | None]:
    since, until = _time(request, "since"), _time(request, "until")
    params.check_range(since, until)
    return since, until


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bucket(request: web.Request) -> Literal["hour", "day"]:
    b = request.query.get("bucket", "hour")
    if b not in ("hour", "day"):
        raise ConfigError(f"bucket must be hour or day, got {b!r}")
    return cast(Literal["hour", "day"], b)


def _types(request: web.Request) -> tuple[str, ...]:
    return tuple(t for v in request.query.getall("type", []) for t in v.split(",") if t)


def _ctx(request: web.Request) -> ServeContext:
    return request.app[CTX]


async def user_events(request: web.Request) -> web.Response:
    """A user's events, newest first; ``next_before`` pages on (keyset)."""
    from etl.read.events import user_events as read

    ctx = _ctx(request)
    user = params.parse_uuid(request.match_info["user_id"], "user_id")
    since, until = _range(request)
    before = request.query.get("before")
    limit = _int(request, "limit", 50, 1, ctx.row_cap)
    types = _types(request)
    if not (types or since or until or before) and limit < PER_USER and ctx.cache is not None:
        version = await ctx.cache.version()
        if version is not None and ctx.cache.confirmed():
            body = ctx.pages.page(ctx.db, version, user, limit)
            if body is not None:
                return web.Response(body=body, content_type="application/json")
    async with ctx.db.connection() as conn:
        page = await read(
            conn,
            user,
            types=types,
            since=since,
            until=until,
            before=params.parse_before(before) if before else None,
            limit=limit,
        )
    return _json(page)


async def _report(
    request: web.Request, types: tuple[str, ...], *, with_stats: bool = False, horizon: int = 0
) -> Any:
    from etl.read.stats import report_of

    ctx = _ctx(request)
    since, until = _range(request)
    bucket = _bucket(request)
    version = await ctx.cache.version() if ctx.cache is not None else None
    data = await ctx.series.read(ctx.db, version, bucket, types, since, until)
    if len(data.buckets) > ctx.row_cap * 10:
        raise ConfigError(f"{len(data.buckets)} buckets: narrow since/until or use bucket=day")
    try:
        return report_of(data, with_stats=with_stats, horizon=horizon)
    except ValueError as exc:  # too little history to fit a forecast
        raise ApiError(422, "cannot_forecast", str(exc)) from exc


async def series(request: web.Request) -> web.Response:
    """Counts per bucket for ``type`` (repeatable; all types when absent)."""
    return _json((await _report(request, _types(request))).data)


async def series_count(request: web.Request) -> web.Response:
    """How many series (event types) are held."""
    ctx = _ctx(request)
    version = await ctx.cache.version() if ctx.cache is not None else None
    return _json({"series": await ctx.series.count(ctx.db, version)})


async def series_one(request: web.Request) -> web.Response:
    return _json((await _report(request, (request.match_info["type"],))).data)


async def series_stats(request: web.Request) -> web.Response:
    report = await _report(request, (request.match_info["type"],), with_stats=True)
    return _json({"bucket": report.data.bucket, "stats": report.stats})


async def series_forecast(request: web.Request) -> web.Response:
    h = _int(request, "h", 24, 1, 24 * 14)
    report = await _report(request, (request.match_info["type"],), horizon=h)
    return _json({"bucket": report.data.bucket, "forecasts": report.forecasts})


async def purge_series(request: web.Request) -> web.Response:
    """Delete a type's events (in ``[since, until)`` when given), rollups kept consistent in
    the same transaction; ``dry_run=true`` only counts; later ingests do not re-load them
    unless ``allow_reload=true``. Same rules as `etl purge`."""
    from etl.read.db import run_query
    from etl.sink.purge import PurgeFilter, purge

    since, until = _range(request)
    f = PurgeFilter(type=request.match_info["type"], since=since, until=until)
    flag = {"true": True, "1": True, "false": False, "0": False, "": False}
    try:
        dry = flag[request.query.get("dry_run", "").lower()]
        reload_ = flag[request.query.get("allow_reload", "").lower()]
    except KeyError as exc:
        raise ConfigError("dry_run and allow_reload take true or false") from exc
    async with _ctx(request).db.connection() as conn:
        result = await run_query(conn, "purging", purge, f, dry_run=dry, allow_reload=reload_)
    if not dry:
        _ctx(request).data_changed()
    return _json(result)


async def _anomalies(request: web.Request, *, store: bool) -> Any:
    from etl import thresholds as th
    from etl.anomaly import Settings
    from etl.read.anomalies import find_anomalies

    ctx = _ctx(request)
    until = _time(request, "until")
    settings = Settings(
        _int(request, "training_days", 14, 1, 365),
        _int(request, "detection_days", 2, 1, 60),
        float(_int(request, "sensitivity", 3, 1, 100)),
        _int(request, "min_training_points", 7, 2, 10_000),
    )
    rules = await th.from_url(ctx.thresholds_url) if ctx.thresholds_url else []
    async with ctx.db.connection() as conn:
        report = await find_anomalies(
            conn,
            bucket=_bucket(request),
            types=_types(request),
            until=until,
            settings=settings,
            rules=rules,
            store=store,
        )
    return {**jsonable(report), "found": report.found}


async def anomalies(request: web.Request) -> web.Response:
    """As `etl anomalies --json` (found anomalies and threshold breaches), judged without
    storing a run (``run_id`` null): a GET changes nothing. A thresholds service that fails
    is 502, never an empty list."""
    return _json(await _anomalies(request, store=False))


async def store_anomalies(request: web.Request) -> web.Response:
    """As `etl anomalies`: judge, and store the run and its findings (what the dashboard
    marks); 201 with the run's id."""
    doc = await _anomalies(request, store=True)
    _ctx(request).data_changed()
    return _json(doc, status=201)


async def top(request: web.Request) -> web.Response:
    """Top users, types or pages by events or purchases; ties broken by key, deterministic."""
    from etl.read.top import read_top
    from etl.serve.topstore import top_users

    ctx = _ctx(request)
    what = request.match_info["what"]
    by = request.query.get("by", "events")
    if what not in ("users", "types", "pages") or by not in ("events", "purchases"):
        raise ConfigError("top lists are users|types|pages by events|purchases")
    since, until = _range(request)
    limit = _int(request, "limit", 10, 1, ctx.row_cap)
    version = await ctx.cache.version() if ctx.cache is not None else None
    held = ctx.top.users(ctx.db, version) if what == "users" and version else None
    if held is not None:
        return _json(top_users(held, cast(Any, by), limit, since, until))
    async with ctx.db.connection() as conn:
        result = await read_top(
            conn, cast(Any, what), by=cast(Any, by), limit=limit, since=since, until=until
        )
    return _json(result)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/events/{user_id}", user_events)
    r.add_get("/series", series)
    r.add_get("/series/count", series_count)
    r.add_get("/series/{type}", series_one)
    r.add_get("/series/{type}/stats", series_stats)
    r.add_get("/series/{type}/forecast", series_forecast)
    r.add_delete("/series/{type}", purge_series)
    r.add_get("/anomalies", anomalies)
    r.add_post("/anomalies/runs", store_anomalies)
    r.add_get("/top/{what}", top)
