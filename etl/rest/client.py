"""One page request of a declarative stream: auth, rate limits, response rules, retries.

Per attempt: wait for the source's shared budget (``etl.rest.budget``: synced from the
rate-limit headers, shared by the streams running together) -> apply auth -> send ->
match the response against the stream's rules, then the built-in ones (429 and 5xx:
retry; 401: refresh the token, then retry once; any other 4xx: fail). ``retry`` waits
for ``Retry-After`` when the response has one (on a 403/429 every stream of the source
waits), else for the reset of a spent budget, else a capped, jittered backoff. Transport
faults (timeouts, dropped connections, a body cut short or not JSON) are retried too;
after ``max_attempts`` the stream fails (exit 5).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from etl.auth.oauth2 import Requester
from etl.auth.schemes import Auth
from etl.errors import AuthError, PermanentSourceError, SourceError, TransientSourceError
from etl.models import Clock
from etl.rest.budget import SharedBudget
from etl.rest.paginate import Request
from etl.rest.spec import RateLimitHeaders, ResponseRule, StreamSpec
from etl.source.retry import RetryPolicy

BUILT_IN: tuple[ResponseRule, ...] = (
    ResponseRule("retry", status=(429, 500, 502, 503, 504)),
    ResponseRule("refresh_token_then_retry", status=(401,)),
)
EPOCH_THRESHOLD = 1e9  # a reset above this is an epoch time, below it seconds from now


class ResetPagination(SourceError):
    """The stream's rules say: start the pagination again from the committed cursor."""


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    token_refreshes: int = 0
    resets: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    body: Any
    headers: dict[str, str] = field(repr=False)


def retry_after(value: str | None, wall: float) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - wall)


class RestClient:
    def __init__(
        self,
        http: Requester,
        auth: Auth,
        *,
        clock: Clock,
        wall: Callable[[], float],
        retry: RetryPolicy | None = None,
        budget: SharedBudget | None = None,
    ) -> None:
        """``budget``: shared with other clients of the same source (default: its own)."""
        self.http = http
        self.auth = auth
        self.clock = clock
        self.wall = wall
        self.retry = retry or RetryPolicy()
        self.counters = Counters()
        self.budget = budget or SharedBudget(clock)
        self._secret_params: set[str] = set()  # query parameters the auth adds (a key)

    def storable(self, request: Request) -> Request:
        """``request`` without the auth's query parameters, also where the server echoed
        them into a next-page URL: what may be written to the progress row."""
        if not self._secret_params:
            return request
        parts = urlsplit(request.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in self._secret_params]  # fmt: skip
        url = urlunsplit(parts._replace(query=urlencode(query)))
        params = tuple((k, v) for k, v in request.params if k not in self._secret_params)
        return Request(url, params)

    async def fetch(self, stream: StreamSpec, request: Request, *, acquired: bool = False) -> Page:
        """``acquired``: the caller took the first attempt's budget (a lane's ``acquire``)."""
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            await self._take_budget(taken=acquired and attempt == 1)
            headers = dict(stream.headers)
            params = dict(request.params)
            await self.auth.apply(headers, params)
            self._secret_params.update(k for k in params if k not in dict(request.params))
            self.counters.requests += 1
            try:
                resp = await self.http.request("GET", request.url, params=params, headers=headers)
                got = {k.lower(): v for k, v in resp.headers.items()}
                self._learn(stream.rate_limit, got)
                rule = _match(
                    stream.responses + _limited(stream.rate_limit) + BUILT_IN, resp.status, got
                )
                if rule is None and 200 <= resp.status < 300:
                    return Page(_json(resp.body), got)
            except TransientSourceError as exc:
                wait = self.retry.delay(attempt)
                problem: SourceError = exc
            else:
                action = rule.action if rule is not None else "fail"
                if action == "ignore":
                    return Page([], got)
                if action == "reset_pagination":
                    self.counters.resets += 1
                    raise ResetPagination(f"{stream.name}: HTTP {resp.status}, pagination reset")
                if action == "refresh_token_then_retry" and not renewed:
                    renewed = True
                    if not await self.auth.renew():
                        raise AuthError(
                            f"{stream.name}: HTTP {resp.status}: the API refused the "
                            f"credentials ({self.auth.describe()})"
                        )
                    self.counters.token_refreshes += 1
                    continue
                if action != "retry":
                    raise _failure(stream, resp.status, rule)
                wait = self._retry_wait(stream.rate_limit, got, resp.status, attempt)
                if resp.status in (403, 429):
                    self.counters.rate_limited += 1
                problem = TransientSourceError(f"{stream.name}: HTTP {resp.status}")
            if attempt >= self.retry.max_attempts:
                raise PermanentSourceError(
                    f"{problem} (gave up after {attempt} attempts)"
                ) from problem
            self.counters.retries += 1
            await self.clock.sleep(wait)

    async def _take_budget(self, *, taken: bool) -> None:
        if not taken:
            await self.budget.acquire()

    def _retry_wait(
        self, names: RateLimitHeaders, got: dict[str, str], status: int, attempt: int
    ) -> float:
        delay = retry_after(got.get(names.retry_after.lower()), self.wall())
        if delay is not None and status in (403, 429):
            self.budget.pause_for(delay)  # a rate limit: every stream of the source waits
            return 0.0
        if delay is not None:
            return delay
        if not self.budget.ready():
            return 0.0  # the budget's acquire() waits for the reset
        return self.retry.delay(attempt)

    def _learn(self, names: RateLimitHeaders, got: dict[str, str]) -> None:
        """Sync the shared budget from the rate-limit headers, when they are there."""
        if names.remaining is None or names.reset is None:
            return
        try:
            remaining = int(got[names.remaining.lower()])
            reset = float(got[names.reset.lower()])
        except (KeyError, ValueError):
            return
        try:
            limit = int(got[names.limit.lower()]) if names.limit is not None else None
        except (KeyError, ValueError):
            limit = None
        epoch = names.reset_format == "epoch" or (
            names.reset_format == "auto" and reset > EPOCH_THRESHOLD
        )
        self.budget.observe(limit, remaining, reset - self.wall() if epoch else reset)


def _match(
    rules: tuple[ResponseRule, ...], status: int, got: dict[str, str]
) -> ResponseRule | None:
    return next((r for r in rules if r.matches(status, got)), None)


def _limited(names: RateLimitHeaders) -> tuple[ResponseRule, ...]:
    """A 403 or 429 that says it is a rate limit (Retry-After, or nothing remaining): retry."""
    rules = [ResponseRule("retry", status=(403, 429), header_present=names.retry_after)]
    if names.remaining is not None:
        rules.append(
            ResponseRule(
                "retry", status=(403, 429), header_equals=((names.remaining.lower(), "0"),)
            )
        )
    return tuple(rules)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # truncated or not JSON: the server's fault, worth a retry
        raise TransientSourceError("the response is not valid JSON (cut short?)") from exc


def _failure(stream: StreamSpec, status: int, rule: ResponseRule | None) -> SourceError:
    why = f": {rule.message}" if rule is not None and rule.message else ""
    message = f"{stream.name}: HTTP {status}{why}"
    return AuthError(message) if status == 401 else PermanentSourceError(message)
