"""The aiohttp application of `etl serve`: routes over the read side, one error envelope.

``make_app(ctx)`` wires the middlewares (errors -> envelope, per-route telemetry, client API
key) and the route modules; it opens nothing itself: the database pool is created on the
first request that needs it (``etl.pg.RecoveringPool``), so the server starts, and says 503,
while the database is down, and recovers by itself.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from etl.errors import EtlError
from etl.pg import RecoveringPool
from etl.serve.cache import AnswerCache
from etl.serve.envelope import ApiError, Handler, error_middleware
from etl.serve.peers import Peers
from etl.serve.postgroup import PostGroups
from etl.serve.seriesstore import SeriesStore
from etl.serve.telemetry import Telemetry
from etl.serve.topstore import TopStore
from etl.serve.userpages import UserPages

# ("ok" | "error" | "not configured", detail) of the source API, checked per /health call
ApiCheck = Callable[[], Awaitable[tuple[str, str]]]

CTX: web.AppKey[ServeContext] = web.AppKey("etl_serve_ctx")
PUBLIC_PATHS = frozenset({"/health", "/", "/openapi.json", "/dashboard.js"})


@dataclass(slots=True)
class ServeContext:
    db: RecoveringPool
    api_check: ApiCheck | None = None
    dataset: dict[str, object] = field(default_factory=dict)
    client_api_key: str | None = None  # required from clients (X-API-Key or Bearer) when set
    max_body_bytes: int = 1_048_576
    max_events_per_request: int = 1000
    row_cap: int = 1000  # most rows any GET returns
    thresholds_url: str | None = None  # benchmark service for /anomalies' threshold rules
    cache_ttl_s: float = 1.0  # live GET answers shared for this long (0: no cache at all)
    cache_poll_s: float = 1.0  # data answers: the data's version is read this often at most
    cache_max_age_s: float = 60.0  # ... and kept this long at most while it does not change
    clock: Callable[[], float] = time.monotonic  # for the cache's expiry
    telemetry: Telemetry = field(default_factory=Telemetry)
    cache: AnswerCache | None = None  # made by make_app from the cache_* fields and clock
    series: SeriesStore = field(default_factory=SeriesStore)  # series cut from memory
    top: TopStore = field(default_factory=TopStore)  # top users from memory
    pages: UserPages = field(default_factory=UserPages)  # users' newest events from memory
    peers: Peers | None = None  # with --workers > 1: the other workers' counters for /metrics
    posts: PostGroups = field(default_factory=PostGroups)  # POST /events' grouped inserts
    warm: bool = False  # the start-up fill of the stores (``warm``) has ended

    def data_changed(self) -> None:
        """A write went through this server: cached data answers are stale now."""
        if self.cache is not None:
            self.cache.data_changed()


def _auth_middleware(key: str | None) -> Callable[[web.Request, Handler], object]:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if key and request.path not in PUBLIC_PATHS:
            given = request.headers.get("X-API-Key", "")
            bearer = request.headers.get("Authorization", "")
            if bearer.lower().startswith("bearer "):
                given = given or bearer[7:].strip()
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise ApiError(401, "unauthorized", "missing or wrong API key (X-API-Key)")
        return await handler(request)

    return auth


async def warm(ctx: ServeContext) -> None:
    """Fill what a worker's first clients would otherwise wait for, for the current data:
    the dashboard's charts, the in-memory stores (series, top users, users' newest events).
    A database that does not answer leaves them for later. ``ctx.warm`` says when done
    (``etl_serve_warm`` in /metrics)."""
    from etl.serve.routes_dashboard import warm_charts

    assert ctx.cache is not None
    try:
        version = await ctx.cache.version()
        if version is None:
            return
        ctx.top.users(ctx.db, version)
        await warm_charts(ctx)
        for bucket in ("hour", "day"):
            await ctx.series.read(ctx.db, version, bucket, (), None, None)
        await ctx.pages.fill(ctx.db, version)
        await ctx.top.loaded()
    except EtlError:
        return
    finally:
        ctx.warm = True


def make_app(ctx: ServeContext) -> web.Application:
    from etl.serve import routes_dashboard, routes_events, routes_read, routes_sync

    async def version() -> str:
        from etl.read.version import data_version

        async with ctx.db.connection() as conn:
            return await data_version(conn)

    ctx.pages.clock = ctx.clock
    ctx.cache = AnswerCache(
        ctx.cache_ttl_s,
        version=version,
        poll_s=ctx.cache_poll_s,
        max_age_s=ctx.cache_max_age_s,
        clock=ctx.clock,
    )
    app = web.Application(
        client_max_size=ctx.max_body_bytes,
        middlewares=[
            ctx.telemetry.middleware(),  # type: ignore[list-item]
            error_middleware,
            _auth_middleware(ctx.client_api_key),  # type: ignore[list-item]
            ctx.cache.middleware(),  # type: ignore[list-item]
        ],
    )
    app[CTX] = ctx
    routes_sync.register(app)
    routes_events.register(app)
    routes_read.register(app)
    routes_dashboard.register(app)

    async def _close(app: web.Application) -> None:
        await app[CTX].db.close()

    app.on_cleanup.append(_close)
    if ctx.peers is not None:
        peers, cache = ctx.peers, ctx.cache

        def snapshot() -> dict[str, object]:
            return {
                "telemetry": ctx.telemetry.snapshot(),
                "cache": cache.snapshot(),
                "warm": ctx.warm,
            }

        app.cleanup_ctx.append(lambda _: peers.publishing(snapshot))
    return app
