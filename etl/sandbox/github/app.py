"""The GitHub-compatible surface, mounted at ``/github`` of the sandbox (``build_app``).

    GET  /github/repos/{owner}/{repo}/issues           state sort direction since per_page page
    GET  /github/repos/{owner}/{repo}/issues/comments  sort direction since per_page page
    GET  /github/repos/{owner}/{repo}/issues/{number}/comments  since per_page page (created asc)
    GET  /github/user, /github/rate_limit               (rate_limit costs nothing, like GitHub's)
    POST /github/login/device/code                      the device flow's first step
    POST /github/login/oauth/access_token               device polling, refresh, client credentials
    GET  /github/login/device?user_code=XXXX-XXXX       "the person" approves (&deny=1 denies)

Order per API request: auth (401) -> primary limit (403/429, remaining 0) -> secondary limit
(403/429 with retry-after) -> fault plan (5xx, truncated, dropped) -> handler. Pages are
linked by the ``Link`` header only (first/prev/next/last), as on GitHub.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from etl.sandbox import faults
from etl.sandbox.clock import SandboxClock
from etl.sandbox.github.config import DEMO_REPO, GithubConfig
from etl.sandbox.github.data import Repository, malformed
from etl.sandbox.github.limits import Limits
from etl.sandbox.github.oauth import OAuth, oauth_response, read_form
from etl.sandbox.responses import alb_error

PREFIX = "/github"
DOCS = "https://docs.github.com/rest"


@dataclass
class GithubStats:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class GithubState:
    def __init__(self, config: GithubConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self.repo = Repository(config)
        self.oauth = OAuth(config)
        self.limits = Limits(config)
        self.rng = random.Random(config.fault_seed)
        self.stats = GithubStats()

    def now(self) -> float:
        return self.clock.time()


GITHUB: web.AppKey[GithubState] = web.AppKey("github_state", GithubState)


def build_github_app(config: GithubConfig, clock: SandboxClock) -> web.Application:
    app = web.Application()
    app[GITHUB] = GithubState(config, clock)
    app.router.add_get("/repos/{owner}/{repo}/issues", _api(_issues, "issues"))
    app.router.add_get("/repos/{owner}/{repo}/issues/comments", _api(_comments, "comments"))
    app.router.add_get(
        "/repos/{owner}/{repo}/issues/{number:[0-9]+}/comments", _api(_issue_comments, "comments")
    )
    app.router.add_get("/user", _api(_user, "user"))
    app.router.add_get("/rate_limit", _api(_rate_limit, "rate_limit"))
    app.router.add_post("/login/device/code", _device_code)
    app.router.add_post("/login/oauth/access_token", _access_token)
    app.router.add_get("/login/device", _verify)
    return app


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": DOCS, "status": str(status)},
        status=status,
        headers=headers,
    )


Handler = Callable[["GithubState", web.Request, int], Awaitable[web.Response]]


def _api(handler: Handler, label: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[GITHUB]
        resp = await _guarded(state, request, handler, label)
        state.stats.requests[label] += 1
        state.stats.statuses[label, resp.status] += 1
        return resp

    return endpoint


async def _guarded(
    state: GithubState, request: web.Request, handler: Handler, label: str
) -> web.StreamResponse:
    c, now = state.config, state.now()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token:
        return _message(401, "Requires authentication")
    user = state.oauth.user_of(token.strip(), now)
    if user is None:
        return _message(401, "Bad credentials")
    if label == "rate_limit":
        return await handler(state, request, user)
    limited = c.unlimited is False
    verdict = state.limits.primary(user, now) if limited else None
    headers = verdict.headers() if verdict is not None else {}
    if verdict is not None and not verdict.allowed:
        return _message(c.primary_status, f"API rate limit exceeded for user ID {user}.", headers)
    retry_after = state.limits.secondary(user, now) if limited else None
    plan = _plan(state) if label in ("issues", "comments") else faults.NO_FAULT
    if retry_after is None and state.config.faults_enabled and state.rng.random() < c.p_secondary:
        retry_after = c.scaled(c.secondary_retry_after)
    if retry_after is not None:
        headers["retry-after"] = str(math.ceil(retry_after))
        return _message(
            c.secondary_status,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again.",
            headers,
        )
    if plan.exclusive in ("500", "502", "503", "504"):
        state.stats.faults[plan.exclusive] += 1
        return alb_error(int(plan.exclusive))
    if c.latency > 0 and not c.unlimited and label in ("issues", "comments"):
        await asyncio.sleep(c.scaled(c.latency))
    resp = await handler(state, request, user)
    resp.headers.update(headers)
    if plan.exclusive == "truncate":
        state.stats.faults["truncate"] += 1
        return faults.truncate(resp, plan.cut)
    if plan.exclusive == "drop":
        state.stats.faults["drop"] += 1
        return await faults.drop(request, resp, plan.cut)
    return resp


def _plan(state: GithubState) -> faults.Plan:
    c, r = state.config, state.rng
    if not c.faults_enabled:
        return faults.NO_FAULT
    u, acc = r.random(), 0.0
    cut = 0.05 + 0.9 * r.random()
    options: tuple[tuple[faults.Exclusive, float], ...] = (
        ("500", c.p_500),
        ("502", c.p_502),
        ("503", c.p_503),
        ("504", c.p_504),
        ("truncate", c.p_truncate),
        ("drop", c.p_drop),
    )
    for kind, p in options:
        acc += p
        if u < acc:
            return faults.Plan(kind, cut=cut)
    return faults.NO_FAULT


def _paging(request: web.Request, state: GithubState) -> tuple[int, int]:
    c = state.config
    try:
        per_page = int(request.query.get("per_page", c.default_per_page))
        page = int(request.query.get("page", 1))
    except ValueError:
        per_page, page = c.default_per_page, 1
    return max(1, min(per_page, c.max_per_page)), max(1, page)


def _since(request: web.Request) -> int | web.Response | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return _message(422, f"Validation Failed: since {raw!r} is not an ISO 8601 timestamp")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return math.floor(parsed.timestamp())


def _page(request: web.Request, state: GithubState, rows: list[Any]) -> web.Response:
    per_page, page = _paging(request, state)
    last = max(1, math.ceil(len(rows) / per_page))
    root = f"{request.url.origin()}{PREFIX}"
    body = [r.json(root) for r in rows[(page - 1) * per_page : page * per_page]]
    c = state.config
    for record in body:
        if malformed(c.seed, record["id"], c.malformed):
            record["updated_at"] = "last tuesday, around noon"
    links = []

    def link(n: int, rel: str) -> str:
        return f'<{request.url.update_query(page=str(n))}>; rel="{rel}"'

    if page > 1:
        links += [link(page - 1, "prev"), link(1, "first")]
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    headers = {"Link": ", ".join(links)} if links else {}
    return web.Response(
        body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


def _repo_ok(request: web.Request) -> bool:
    return f"{request.match_info['owner']}/{request.match_info['repo']}" == DEMO_REPO


async def _issues(state: GithubState, request: web.Request, user: int) -> web.Response:
    if not _repo_ok(request):
        return _message(404, "Not Found")
    since = _since(request)
    if isinstance(since, web.Response):
        return since
    q = request.query
    rows = state.repo.list_issues(
        state=q.get("state", "open"),
        sort=q.get("sort", "created"),
        direction=q.get("direction", "desc"),
        since=since,
    )
    return _page(request, state, rows)


async def _comments(state: GithubState, request: web.Request, user: int) -> web.Response:
    if not _repo_ok(request):
        return _message(404, "Not Found")
    since = _since(request)
    if isinstance(since, web.Response):
        return since
    q = request.query
    rows = state.repo.list_comments(
        sort=q.get("sort", "created"), direction=q.get("direction", "asc"), since=since
    )
    return _page(request, state, rows)


async def _issue_comments(state: GithubState, request: web.Request, user: int) -> web.Response:
    """One issue's comments, oldest first (GitHub's order for this endpoint)."""
    number = int(request.match_info["number"])
    if not _repo_ok(request) or number not in state.repo.issues:
        return _message(404, "Not Found")
    since = _since(request)
    if isinstance(since, web.Response):
        return since
    rows = state.repo.list_comments(sort="created", direction="asc", since=since, issue=number)
    return _page(request, state, rows)


async def _user(state: GithubState, request: web.Request, user: int) -> web.Response:
    return web.json_response({"login": "sandbox-user", "id": user, "type": "User"})


async def _rate_limit(state: GithubState, request: web.Request, user: int) -> web.Response:
    v = state.limits.peek(user, state.now())
    core = {"limit": v.limit, "used": v.used, "remaining": v.limit - v.used, "reset": v.reset}
    return web.json_response({"resources": {"core": core}, "rate": core})


async def _device_code(request: web.Request) -> web.Response:
    state = request.app[GITHUB]
    form = await read_form(request)
    if form.get("client_id") != state.config.client_id:
        return _message(404, "Not Found")
    code, device = state.oauth.new_device_code(state.now())
    return oauth_response(
        request,
        {
            "device_code": code,
            "user_code": device.user_code,
            "verification_uri": f"{request.url.origin()}{PREFIX}/login/device",
            "expires_in": round(device.expires - device.issued),
            "interval": round(device.interval),
        },
    )


async def _access_token(request: web.Request) -> web.Response:
    state = request.app[GITHUB]
    form = await read_form(request)
    return oauth_response(request, state.oauth.grant(form, state.now()))


async def _verify(request: web.Request) -> web.Response:
    state = request.app[GITHUB]
    code = request.query.get("user_code")
    if not code:
        return web.Response(
            text="Enter the code shown in your terminal: GET this page with ?user_code=XXXX-XXXX"
        )
    deny = request.query.get("deny") in ("1", "true")
    if not state.oauth.decide(code, approve=not deny):
        return web.Response(status=404, text="No such code.")
    return web.Response(text="Device denied." if deny else "Device approved.")
