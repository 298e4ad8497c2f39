"""The aiohttp application: auth, rate limits, cache, faults and routing, in the real order.

Order per request: auth (401) -> endpoint group's fixed-window limit (429, before routing:
404 lookups under ``/events/*`` spend the events bucket) -> cache -> fault plan -> handler.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from etl.sandbox import benchmarks, events, faults, feed, responses, sessions, submissions
from etl.sandbox.clock import SandboxClock, SystemClock
from etl.sandbox.config import SandboxConfig
from etl.sandbox.databox.config import DATABOX_PREFIX
from etl.sandbox.dataset import EVENT_TYPES, Dataset
from etl.sandbox.github.app import GITHUB, GithubState, build_github_app
from etl.sandbox.github.app import PREFIX as GITHUB_PREFIX
from etl.sandbox.github.config import GithubConfig
from etl.sandbox.state import STATE, State

API = "/api/v1"
NOT_FOUND = ("ENDPOINT_NOT_FOUND", "The requested endpoint does not exist")
INDEX = {
    "name": "DataSync Analytics API",
    "version": "v1",
    "endpoints": {
        "events": "/api/v1/events",
        "sessions": "/api/v1/sessions",
        "metrics": "/api/v1/metrics",
    },
    "authentication": {"method": "API Key", "header": "X-API-Key"},
}


def build_app(
    config: SandboxConfig,
    *,
    clock: SandboxClock | None = None,
    dataset: Dataset | None = None,
    github: GithubConfig | None = None,
) -> web.Application:
    """The sandbox as an aiohttp app; all time comes from ``clock`` (default: wall clock).

    The GitHub surface is mounted at ``/github`` (``github`` defaults to the DataSync
    config's knobs that mean the same there: ``github_config_for``).
    """
    clock = clock or SystemClock()
    state = State(config, clock, dataset or Dataset(config))
    app = web.Application(client_max_size=512 * 1024 * 1024)
    app[STATE] = state
    github = github or github_config_for(config)
    gh_app = build_github_app(github, clock)
    app[GITHUB_APP] = gh_app
    app.add_subapp(GITHUB_PREFIX, gh_app)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


GITHUB_APP: web.AppKey[web.Application] = web.AppKey("github_app", web.Application)


def github_config_for(config: SandboxConfig) -> GithubConfig:
    """The GitHub surface under the same knobs as the DataSync one (`etl sandbox`): seed,
    time scale, ``unlimited``, the fault draws (5xx, truncated, dropped; ``fault_seed``) and
    ``invalid_events`` as the share of issues and comments served malformed."""
    c = config
    return GithubConfig(
        seed=c.seed,
        time_scale=c.time_scale,
        unlimited=c.unlimited,
        fault_seed=c.fault_seed,
        p_500=c.p_500,
        p_502=c.p_502,
        p_503=c.p_503,
        p_504=c.p_504,
        p_truncate=c.p_truncate,
        p_drop=c.p_drop,
        malformed=c.invalid_events,
    )


def github_state_of(app: web.Application) -> GithubState:
    return app[GITHUB_APP][GITHUB]


def state_of(app: web.Application) -> State:
    return app[STATE]


# path -> (label, rate-limit group, methods answered; None: any)
_EXACT: dict[str, tuple[str, str | None, frozenset[str] | None]] = {
    "/health": ("health", None, None),
    "/internal/health": ("internal_health", None, None),
    "/internal/stats": ("stats", None, None),
    "/internal/dashboard/stream-access": ("stream_access", None, frozenset({"POST"})),
    API: ("index", None, None),
    API + "/": ("index", None, None),
    feed.FEED_PATH: ("feed", None, frozenset({"GET", "HEAD"})),
    API + "/events": ("events", "events", frozenset({"GET", "HEAD", "OPTIONS"})),
    API + "/sessions": ("sessions", "sessions", frozenset({"GET", "HEAD"})),
    API + "/metrics": ("metrics", "metrics", frozenset({"GET", "HEAD"})),
    API + "/submissions": ("submissions", None, frozenset({"GET", "POST"})),
}
_PREFIXES: tuple[tuple[str, str, str, frozenset[str]], ...] = (
    (API + "/events/", "event", "events", frozenset({"GET", "HEAD"})),
    (API + "/sessions/", "session", "sessions", frozenset({"GET", "HEAD"})),
)


def _route(method: str, path: str) -> tuple[str, str | None]:
    """(label, rate-limit group) of a request."""
    exact = _EXACT.get(path)
    if exact is not None:
        label, group, methods = exact
    else:
        match = next((p for p in _PREFIXES if path.startswith(p[0])), None)
        if match is None:
            return "not_found", None
        _, label, group, methods = match
    if methods is not None and method not in methods:
        return "not_found", None
    return label, group


_PUBLIC = frozenset({"health", "internal_health", "not_found"})
_LIMITS = {"sessions": "sessions_limit", "metrics": "metrics_limit"}
_CACHED = frozenset({"events", "sessions", "metrics"})


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith(DATABOX_PREFIX + "/"):
        return await state.databox.handle(request)
    if request.path == benchmarks.BENCHMARKS_PATH and request.method == "GET":
        return await benchmarks.serve(state)
    label, group = _route(request.method, request.path)
    resp = await _handle(state, request, label, group)
    state.stats.record(label, resp.status)
    return resp


async def _handle(
    state: State, request: web.Request, label: str, group: str | None
) -> web.StreamResponse:
    """One request through the API's layers, as the real one stacks them: public routes,
    the key, the rate limit and the cache, injected faults, then the route itself."""
    public = _public(request, label)
    if public is not None:
        return public
    key = _authenticate(state, request)
    if isinstance(key, web.StreamResponse):
        return key
    api_key, via = key
    gate = _Gate(rid=responses.request_id())
    if group is not None and state.config.limits_enabled:
        early = _limit_and_cache(state, request, label, group, api_key, via, gate)
        if early is not None:
            return early
    plan, early = await _faults(state, label)
    if early is not None:
        return early
    resp = await _serve(state, request, label, api_key, plan, gate.rid)
    return await _finish(state, request, resp, plan, gate)


def _public(request: web.Request, label: str) -> web.StreamResponse | None:
    """The answer of a route that needs no key (or of an OPTIONS the load balancer eats)."""
    if label == "not_found":
        return responses.error(404, *NOT_FOUND)
    if label == "health":
        return web.Response(text="OK")
    if label == "internal_health":
        return responses.json_response({"status": "ok", "database": "ok", "redis": "ok"})
    if label == "events" and request.method == "OPTIONS":
        return responses.alb_error(504)
    return None


def _authenticate(state: State, request: web.Request) -> tuple[str, str] | web.StreamResponse:
    """(key, where it came from), or the 401 to answer."""
    api_key, via = _api_key(request)
    if api_key is None:
        return responses.error(
            401, "MISSING_API_KEY", "API key required. Provide it in the X-API-Key header."
        )
    if api_key not in state.config.keys:
        return responses.error(401, "INVALID_API_KEY", "Invalid API key")
    state.first_seen.setdefault(api_key, state.now())
    return api_key, via


@dataclass
class _Gate:
    """What the rate limit and the cache decided for a request that goes on."""

    rid: str
    rate_headers: dict[str, str] = field(default_factory=dict)
    cache_key: str | None = None


def _limit_and_cache(
    state: State,
    request: web.Request,
    label: str,
    group: str,
    api_key: str,
    via: str,
    gate: _Gate,
) -> web.StreamResponse | None:
    """Spend the request's rate-limit token (a cache hit may be free): a 429, a cached
    answer, or None (go on; ``gate`` says what to add to the response)."""
    c = state.config
    cached = None
    if label in _CACHED and request.method == "GET":
        gate.cache_key = _cache_key(request)
        cached = state.cache.get(gate.cache_key, state.now())
    spend = cached is None or c.cache_hit_consumes
    verdict = state.limiter.hit(
        _bucket(c, api_key, via, group), _limit(c, group, via), state.now(), spend=spend
    )
    gate.rate_headers = verdict.headers()
    if not verdict.allowed:
        gate.rate_headers["Retry-After"] = str(verdict.reset)
        return responses.error(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"Rate limit exceeded. Try again in {verdict.reset} seconds.",
            headers=gate.rate_headers,
            extra={
                "rateLimit": {
                    "limit": verdict.limit,
                    "remaining": 0,
                    "reset": verdict.reset,
                    "retryAfter": verdict.reset,
                }
            },
        )
    if cached is None:
        return None
    state.stats.cache_hits += 1
    body, cached_rid = cached
    headers = {**gate.rate_headers, "X-Cache": "HIT", "X-Cache-TTL": _ttl_text(c)}
    return responses.json_response(body, rid=cached_rid, headers=headers)


async def _faults(state: State, label: str) -> tuple[faults.Plan, web.StreamResponse | None]:
    """The faults drawn for this request; an ALB error answers at once."""
    if label not in ("events", "feed", "sessions", "stream_access"):
        return faults.NO_FAULT, None
    plan = state.faults.plan(body_faults=label != "stream_access")
    if plan.any:
        state.stats.faults.update(
            k
            for k, on in (
                (plan.exclusive or "", plan.exclusive is not None),
                ("slow", plan.slow),
                ("missingFields", plan.missing_fields),
            )
            if on
        )
    if plan.slow:
        await state.faults.slow()
    if plan.exclusive in ("500", "502", "503", "504"):
        return plan, responses.alb_error(int(plan.exclusive))
    return plan, None


async def _finish(
    state: State, request: web.Request, resp: web.Response, plan: faults.Plan, gate: _Gate
) -> web.StreamResponse:
    """Rate and cache headers, the cache fill, and the faults that damage the body."""
    c = state.config
    if gate.rate_headers:
        resp.headers.update(gate.rate_headers)
    if gate.cache_key is not None:
        resp.headers["X-Cache"] = "MISS"
        resp.headers["X-Cache-TTL"] = _ttl_text(c)
        if (
            resp.status == 200
            and isinstance(resp.body, bytes)
            and "X-Chaos-Applied" not in resp.headers
        ):
            state.cache.put(gate.cache_key, state.now(), resp.body, gate.rid)
    if request.method == "HEAD":
        resp.headers.popall("X-Cache", None)
        resp.headers.popall("X-Cache-TTL", None)
    if plan.slow:
        resp.headers["X-Chaos-Applied"] = _join(resp.headers.get("X-Chaos-Applied"), "slowResponse")
    if plan.exclusive == "truncate" and resp.status == 200:
        return faults.truncate(resp, plan.cut)
    if plan.exclusive == "drop" and resp.status == 200:
        return await faults.drop(request, resp, plan.cut)
    return resp


async def _serve(
    state: State, request: web.Request, label: str, api_key: str, plan: faults.Plan, rid: str
) -> web.Response:
    if label == "events":
        return await events.list_events(state, request, plan, rid)
    if label == "event":
        return await events.get_event(state, request.path[len(API + "/events/") :], rid)
    if label == "feed":
        return await feed.feed(state, request, api_key, plan, rid)
    if label == "stream_access":
        return feed.stream_access(state, request, api_key)
    if label == "sessions":
        return sessions.list_sessions(state, request, rid)
    if label == "session":
        return sessions.get_session(state, request.path[len(API + "/sessions/") :], rid)
    if label == "metrics":
        return sessions.metrics(state, request, rid)
    if label == "submissions":
        if request.method == "POST":
            return await submissions.submit(state, request, api_key)
        return submissions.list_submissions(state, api_key)
    if label == "stats":
        return _stats(state)
    return responses.json_response(INDEX, rid=rid)


def _api_key(request: web.Request) -> tuple[str | None, str]:
    key = request.headers.get("X-API-Key")
    if key:
        return key, "header"
    key = request.query.get("api_key") or request.query.get("apiKey")
    return (key, "query") if key else (None, "none")


def _bucket(c: SandboxConfig, api_key: str, via: str, group: str) -> tuple[str, str, str]:
    pool = "query" if via == "query" and c.query_auth_pool == "separate" else "header"
    return api_key, group, pool


def _limit(c: SandboxConfig, group: str, via: str) -> int:
    if group == "events":
        return c.query_auth_limit if via == "query" else c.rate_limit
    limit: int = getattr(c, _LIMITS[group])
    return limit


def _cache_key(request: web.Request) -> str:
    items = sorted((k, v) for k, v in request.query.items() if k not in ("api_key", "apiKey"))
    return request.path + "?" + "&".join(f"{k}={v}" for k, v in items)


def _ttl_text(c: SandboxConfig) -> str:
    return str(max(1, round(c.scaled(c.cache_ttl))))


def _join(existing: str | None, item: str) -> str:
    return item if not existing else f"{existing}, {item}"


def _stats(state: State) -> web.Response:
    ds = state.dataset
    live = state.live()
    device_counts: dict[str, int] = {"mobile": 0, "tablet": 0, "desktop": 0}
    table = sessions.table(state)
    for row in table.rows:
        device_counts[ds.session_info(row[2]).device_type] += 1
    types = ds.type_counts()
    body: Mapping[str, object] = {
        "counts": {
            "users": ds.users,
            "sessions": len(table.rows),
            "events": ds.total(live),
            "metrics": 0,
        },
        "distributions": {
            "eventTypes": [{"type": t, "count": types[t]} for t in EVENT_TYPES],
            "deviceTypes": [{"type": k, "count": v} for k, v in device_counts.items()],
        },
        "meta": {
            "generatedAt": dt.datetime.fromtimestamp(state.now(), dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        },
        "cache": {
            "status": "MISS",
            "ttl": 300,
            "redis": {"keys": 2, "memory": "7.62M", "hitRate": "83.4%"},
        },
    }
    return responses.json_response(body)
