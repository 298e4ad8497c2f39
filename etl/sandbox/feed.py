"""The fast path: ``POST /internal/dashboard/stream-access`` and the token-gated feed.

Stream access needs a browser-like User-Agent (``Mozilla/``), else 403 DASHBOARD_REQUIRED.
Tokens (64 hex) live ``token_ttl`` seconds, are bound to the key that asked, and a new one
never invalidates the old ones. The feed sends no rate-limit headers; a hidden per-key
sliding window (``feed_throttle`` requests per ``feed_window``) answers 429, without
``Retry-After`` unless ``feed_retry_after``.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets

from aiohttp import web

from etl.sandbox import responses
from etl.sandbox.events import serve_page
from etl.sandbox.faults import Plan
from etl.sandbox.state import State
from etl.sandbox.tsformat import stamp_for

FEED_PATH = "/api/v1/events/d4ta/x7k9/feed"
TOKEN_HEADER = "X-Stream-Token"
NOTE = "Token is required in X-Stream-Token header when accessing the stream endpoint"


def stream_access(state: State, request: web.Request, api_key: str) -> web.Response:
    if not request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return responses.error(403, "DASHBOARD_REQUIRED", "This endpoint requires dashboard access")
    now = state.now()
    _expire(state, now)
    token = secrets.token_hex(32)
    ttl = state.config.scaled(state.config.token_ttl)
    state.tokens[token] = (api_key, now + ttl)
    generated = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")
    return responses.json_response(
        {
            "streamAccess": {
                "endpoint": FEED_PATH,
                "token": token,
                "expiresIn": max(1, math.floor(ttl)),
                "tokenHeader": TOKEN_HEADER,
            },
            "meta": {
                "generatedAt": generated.replace("+00:00", "Z"),
                "note": NOTE,
            },
        }
    )


def _expire(state: State, now: float) -> None:
    if len(state.tokens) > 10_000:
        for token, (_, exp) in list(state.tokens.items()):
            if exp <= now:
                del state.tokens[token]


async def feed(
    state: State, request: web.Request, api_key: str, plan: Plan, rid: str
) -> web.Response:
    now = state.now()
    token = request.headers.get(TOKEN_HEADER, "")
    entry = state.tokens.get(token)
    if not token or entry is None or entry[0] != api_key or now >= entry[1]:
        message = "Stream token is required" if not token else "Invalid or expired stream token"
        return responses.error(403, "INVALID_STREAM_TOKEN", message)
    c = state.config
    state.feed_requests += 1
    if c.feed_down_after and state.feed_requests > c.feed_down_after:
        return responses.error(503, "SERVICE_UNAVAILABLE", "The feed is down")
    if c.limits_enabled:
        allowed, wait = state.feed_throttle.hit(api_key, now)
        if not allowed:
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if c.feed_retry_after else None
            return responses.error(
                429, "RATE_LIMIT_EXCEEDED", "Too many requests. Please slow down.", headers=headers
            )
    bounds = (_epoch_ms(request.query.get("since")), _epoch_ms(request.query.get("until")))
    if c.feed_teapot and _outside_data(state, *bounds):
        return responses.error(
            418, "I_AM_A_TEAPOT", "I'm a teapot: timestamp query outside the data range"
        )
    return await serve_page(
        state,
        request,
        plan,
        rid,
        stamp=stamp_for(c, feed=True),
        by_page=True,
        type_code=None,
        session=None,
        bounds=bounds,
    )


def _outside_data(state: State, since: int | None, until: int | None) -> bool:
    """``since`` older than the oldest event or ``until`` newer than the newest one."""
    ds = state.dataset
    newest = ds.ts_at(0, ds.live_count(state.now_ms()))
    return (since is not None and since < ds.oldest_ts) or (until is not None and until > newest)


def _epoch_ms(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None
