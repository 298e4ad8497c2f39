"""The request budget a declarative source's streams share: one per source, per run.

Streams of a source run concurrently against one API key, so they draw on one budget:
``acquire()`` before every request. Until the API states a limit the budget is unmetered
(only a pause slows it down). Once ``X-RateLimit-*`` headers arrive, the budget is
``etl.ratelimit.TokenBucket`` synced from them: requests are counted down *before* they
are sent, so streams in flight together never spend more than what remains, and the
next window is waited for instead of earning a 403/429. A rate-limit answer with
``Retry-After`` (GitHub's secondary limit) pauses every stream, not only the one that
got it. ``ready()`` is the ``Lane.budget_ready`` half of the same seam.
"""

from __future__ import annotations

from etl.models import Clock
from etl.ratelimit import TokenBucket

UNKNOWN_LIMIT = 1_000_000  # no limit header: the remaining count alone steers the bucket
RESET_MARGIN_S = 1.0  # epoch resets are whole seconds, and the server's clock is elsewhere


class SharedBudget:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.bucket = TokenBucket(1.0, 1, clock, margin_s=RESET_MARGIN_S)
        # the first headers set the budget (sync only ever lowers it within a window)
        self.bucket.tokens = UNKNOWN_LIMIT
        self.metered = False  # the API has stated a limit
        self.waits = 0  # acquisitions that had to wait (budget spent or paused)

    async def acquire(self) -> None:
        """Wait until a request may go out, and count it."""
        if not self.ready():
            self.waits += 1
        now = self._clock.now()
        if now < self.bucket.paused_until:
            await self._clock.sleep(self.bucket.paused_until - now)
        if self.metered:
            await self.bucket.acquire()

    def ready(self) -> bool:
        """Whether ``acquire()`` would let a request go right now."""
        if self.metered:
            return self.bucket.ready()
        return self._clock.now() >= self.bucket.paused_until

    def observe(self, limit: int | None, remaining: int, reset_s: float) -> None:
        """The API's view after a response: ``remaining`` now, the budget back in ``reset_s``."""
        self.metered = True
        self.bucket.sync(limit if limit is not None else UNKNOWN_LIMIT, remaining, reset_s)

    def pause_for(self, seconds: float) -> None:
        """No request from any stream for ``seconds`` (a ``Retry-After``)."""
        self.bucket.pause_for(seconds)
