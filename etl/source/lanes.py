"""The two ways of fetching pages, each with its own budget.

``EventsLane``: the documented ``/events`` endpoint; a token bucket re-synced from the
``X-RateLimit-*`` headers; ``Retry-After`` pauses every fetcher at once.
``FeedLane``: the dashboard's feed; a stream token; a hidden throttle found by AIMD.
Both retry transient faults with capped exponential backoff and jitter, and re-anchor an
expired or refused cursor at the shard's position instead of restarting it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import etl.ratelimit as ratelimit
from etl.errors import (
    BrokenPage,
    CursorExpired,
    DecodeError,
    PermanentSourceError,
    RateLimited,
    StreamTokenError,
    TransientSourceError,
    Unreachable,
)
from etl.models import Clock, Page, Position, RunCounters, ShardState
from etl.source import cursors
from etl.source.decode import salvage_position
from etl.source.feed import StreamToken
from etl.source.http import Http, Response
from etl.source.responses import rate_limit_headers, to_page
from etl.source.retry import RetryLog, RetryPolicy

MAX_CURSOR_RESETS = 5
UNDECODABLE_TRIES = 3  # the same page undecodable this often in a row: it is broken
KEPT_BODY_BYTES = 1 << 20  # of a broken page, kept for quarantine
MAX_RATE_LIMITED = 200  # in a row: a limit that never lifts is a failure, not a wait

Gate = Callable[[], Awaitable[None]]


def wall_ms() -> int:
    return int(time.time() * 1000)


def start_position(shard: ShardState) -> Position | None:
    """Where a shard continues when no usable cursor is at hand.

    A position may come from a timestamp sent in whole seconds (rounded down), so the
    rebuilt cursor starts up to a second above it: a few events are read again, none lost.
    """
    if shard.position is not None:
        return cursors.after_inclusive(shard.position.ts_ms + 999)
    if shard.upper_ts is not None:
        return cursors.after_inclusive(shard.upper_ts)
    return None


class _Lane:
    name = "lane"
    token_auth = False  # 401/403 mean "new token", not "bad key"

    def __init__(
        self,
        http: Http,
        clock: Clock,
        counters: RunCounters,
        *,
        concurrency: int,
        retry: RetryPolicy,
        now_ms: Callable[[], int] = wall_ms,
        retry_log: RetryLog | None = None,
    ) -> None:
        self.http = http
        self.clock = clock
        self.counters = counters
        self.concurrency = concurrency
        self.retry = retry
        self.now_ms = now_ms
        self.retry_log = retry_log
        self.limited_in_a_row = 0  # 429s since the lane's last page

    async def acquire(self) -> float | None:
        raise NotImplementedError

    def budget_ready(self) -> bool:
        raise NotImplementedError

    async def _send(
        self, shard: ShardState, cursor: str | None, limit: int, gate: Gate | None = None
    ) -> Response:
        raise NotImplementedError

    def _current(self, ticket: float | None) -> bool:
        """Whether the grant ``ticket`` may still be spent (else ``fetch`` asks again)."""
        return True

    def _sending(self, ticket: float | None, at: float) -> None:
        """The request granted ``ticket`` goes now (clock time ``at``)."""

    def _observe(self, resp: Response, sent_at: float) -> None:
        """Learn from any response to a request sent at clock time ``sent_at`` (e.g.
        re-sync the limiter from headers)."""

    def _throttled(self, exc: RateLimited, ticket: float | None) -> None:
        raise NotImplementedError

    def _succeeded(self, ticket: float | None) -> None:
        """A page arrived (for the request ``acquire()`` gave ``ticket``)."""

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Gate | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        cursor = shard.cursor
        failures = resets = limited = undecodable = 0
        body = b""
        first = True
        while True:
            if not first or not self._current(ticket):
                ticket = await self.acquire()
            first = False
            # refreshed right before each try: a wait for budget must not let it expire
            cursor = cursors.fresh(
                cursor, fallback=start_position(shard), now_ms=self.now_ms(), margin_ms=15_000
            )
            self.counters.requests += 1
            sent_at = self.clock.now()
            self._sending(ticket, sent_at)
            try:
                resp = await self._send(shard, cursor, limit, gate)
                self._observe(resp, sent_at)
                body = resp.body
                page = to_page(resp, self.name, token_auth=self.token_auth)
            except RateLimited as exc:
                limited += 1
                self._rate_limited(exc, limited, ticket)
                if yield_throttled:
                    raise
                continue
            except CursorExpired as exc:
                resets += 1
                cursor = self._rebuilt_cursor(shard, exc, resets)
                continue
            except StreamTokenError:
                raise
            except BrokenPage as exc:  # too large: refused at once, the same next time
                raise self._broken(str(exc), exc.body) from exc
            except TransientSourceError as exc:
                if isinstance(exc, DecodeError):
                    undecodable += 1
                    if undecodable >= UNDECODABLE_TRIES:
                        # the same answer every time: not a fault of one response but of
                        # the data in it; the pipeline isolates it with smaller pages
                        raise self._broken(
                            f"a page of {limit} never decodes ({exc})", body
                        ) from exc
                failures += 1
                await self._back_off(exc, failures)
                continue
            self.limited_in_a_row = 0
            self._succeeded(ticket)
            return _with_cursor_position(page)

    def _rate_limited(self, exc: RateLimited, times: int, ticket: float | None) -> None:
        """A 429: throttle the lane, or give up past ``MAX_RATE_LIMITED`` in a row (for
        this page, or for the lane since its last page)."""
        self.counters.rate_limited += 1
        self.limited_in_a_row += 1
        if max(times, self.limited_in_a_row) > MAX_RATE_LIMITED:
            raise PermanentSourceError(f"{self.name}: still rate limited: {exc}") from exc
        self._throttled(exc, ticket)

    def _rebuilt_cursor(self, shard: ShardState, exc: CursorExpired, resets: int) -> str | None:
        """A cursor rebuilt from the shard's position after CURSOR_EXPIRED. A refused rebuilt
        cursor means our clock and the API's disagree: each further try lives 30x longer
        (110 s, 55 min, 27 h, ...)."""
        self.counters.cursor_resets += 1
        if resets > MAX_CURSOR_RESETS:
            raise PermanentSourceError(f"{self.name}: cursor keeps failing: {exc}") from exc
        fallback = start_position(shard)
        if fallback is None:
            return None
        ttl_ms = cursors.CURSOR_TTL_MS * 30 ** (resets - 1)
        return cursors.encode(fallback, now_ms=self.now_ms(), ttl_ms=ttl_ms)

    async def _back_off(self, exc: TransientSourceError, failures: int) -> None:
        """Wait before the next try of a transient failure, or give up after the attempts
        allowed (fewer while the API has never answered: a wrong URL fails fast)."""
        attempts = self.retry.max_attempts
        if isinstance(exc, Unreachable) and not self.http.reached:
            attempts = min(attempts, self.retry.startup_attempts)
        if failures >= attempts:
            raise self._gave_up(exc, failures) from exc
        self.counters.retries += 1
        wait = self.retry.delay(failures)
        if self.retry_log is not None:
            self.retry_log(self.name, str(exc), failures, attempts, wait)
        await self.clock.sleep(wait)

    def _broken(self, what: str, body: bytes) -> BrokenPage:
        found = salvage_position(body)
        after = cursor = None
        if found is not None:
            position, cursor = found
            after = (position.ts_ms, position.id)
            cursor = cursor or cursors.encode(position, now_ms=self.now_ms())
        return BrokenPage(
            f"{self.name}: {what}", body=body[:KEPT_BODY_BYTES], after=after, cursor=cursor
        )

    def _gave_up(self, exc: TransientSourceError, failures: int) -> PermanentSourceError:
        tries = f"{failures} attempt{'s' if failures > 1 else ''}"
        if isinstance(exc, Unreachable) and not self.http.reached:
            return PermanentSourceError(
                f"cannot reach the API at {self.http.origin}{self.http.api_path} ({exc}; "
                f"{tries}): check --api-url / DATASYNC_API_URL and that the server is up"
            )
        return PermanentSourceError(f"the API kept failing; gave up after {tries}: {exc}")


def _with_cursor_position(page: Page) -> Page:
    """``page`` with the exact position its next cursor names (when it can be read)."""
    if page.next_cursor is not None:
        decoded = cursors.decode(page.next_cursor)
        if decoded is not None:
            return dataclasses.replace(page, cursor_position=decoded[0])
    return page


class EventsLane(_Lane):
    name = "events"

    def __init__(self, *args: Any, bucket: ratelimit.TokenBucket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bucket = bucket
        self.headers_seen = False
        self.unmetered = False  # the server states no limit: only 429s slow us down

    async def acquire(self) -> float | None:
        if self.unmetered:
            now = self.clock.now()
            if now < self.bucket.paused_until:
                await self.clock.sleep(self.bucket.paused_until - now)
            return None
        await self.bucket.acquire()
        # the grant's window (a shared budget's grants come without one: None)
        return self.bucket.ticket()

    def _current(self, ticket: float | None) -> bool:
        return self.unmetered or self.bucket.current(ticket)

    def _sending(self, ticket: float | None, at: float) -> None:
        if not self.unmetered:
            self.bucket.sent(at, ticket)

    def budget_ready(self) -> bool:
        if self.unmetered:
            return self.clock.now() >= self.bucket.paused_until
        return self.bucket.ready()

    async def _send(
        self, shard: ShardState, cursor: str | None, limit: int, gate: Gate | None = None
    ) -> Response:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self.http.request(
            "GET", self.http.api_url("/events"), params=params, gate=gate
        )

    def _observe(self, resp: Response, sent_at: float) -> None:
        synced = rate_limit_headers(resp.headers)
        if synced is not None:
            self.headers_seen = True
            self.unmetered = False
            self.bucket.sync(*synced, sent_at=sent_at)
        elif resp.status == 200 and not self.headers_seen:
            # A server that never states a limit is not held to the spec's 10/min prior;
            # a 429 (Retry-After) still pauses every fetcher.
            self.unmetered = True

    def _throttled(self, exc: RateLimited, ticket: float | None) -> None:
        self.bucket.pause_for(exc.retry_after_s if exc.retry_after_s is not None else 5.0)


class FeedLane(_Lane):
    name = "feed"
    token_auth = True

    def __init__(
        self, *args: Any, token: StreamToken, rate: ratelimit.AdaptiveRate, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.token = token
        self.rate = rate

    async def acquire(self) -> float | None:
        # the start time is the request's ticket: its answer is matched to it, not to
        # whichever request started first
        return await self.rate.acquire()

    def budget_ready(self) -> bool:
        return self.rate.ready()

    async def _send(
        self, shard: ShardState, cursor: str | None, limit: int, gate: Gate | None = None
    ) -> Response:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if shard.lower_ts is not None:
            params["since"] = shard.lower_ts
        try:
            token = await self.token.get()
        except RateLimited as exc:
            # the token endpoint's limit, not the feed's: back off, learn nothing from it
            raise TransientSourceError(f"stream-access: {exc}") from exc
        resp = await self.http.request(
            "GET",
            f"{self.http.origin}{self.token.endpoint}",
            params=params,
            headers={self.token.header: token},
            gate=gate,
        )
        if resp.status in (401, 403):
            self.token.invalidate(token)
        if resp.status == 418 and "since" in params:
            # Reported "for timestamp queries outside the data range", trigger unknown.
            # ``since`` only saves bytes (pages are filtered by the shard's bounds anyway):
            # ask again without it rather than take the teapot for "nothing there".
            del params["since"]
            resp = await self.http.request(
                "GET",
                f"{self.http.origin}{self.token.endpoint}",
                params=params,
                headers={self.token.header: token},
                gate=gate,
            )
        return resp

    def _throttled(self, exc: RateLimited, ticket: float | None) -> None:
        self.rate.on_throttled(ticket)
        if exc.retry_after_s is not None:
            self.rate.paused_until = max(
                self.rate.paused_until, self.clock.now() + exc.retry_after_s
            )

    def _succeeded(self, ticket: float | None) -> None:
        self.rate.on_success(ticket)

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Gate | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        for attempt in range(3):
            try:
                return await super().fetch(
                    shard, limit, gate=gate, yield_throttled=yield_throttled, ticket=ticket
                )
            except StreamTokenError:
                self.counters.retries += 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
