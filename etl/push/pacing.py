"""Request pacing for a destination: a token bucket plus Retry-After pauses, on a ``Clock``.

``rate_per_s`` tokens a second, at most ``burst`` saved up. A 429's ``Retry-After`` pauses
every sender until then (``pause_for``); a server that sends none gets ``default_pause_s``.
"""

from __future__ import annotations

from etl.models import Clock

_EPS = 1e-6


class Pacer:
    def __init__(
        self, clock: Clock, rate_per_s: float, *, burst: float = 1.0, default_pause_s: float = 1.0
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self.clock = clock
        self.rate = rate_per_s
        self.burst = max(1.0, burst)
        self.default_pause_s = default_pause_s
        self._tokens = 1.0
        self._at = clock.now()
        self._paused_until = 0.0
        self.waited_s = 0.0  # time spent waiting for a token or a pause (for the summary)

    async def acquire(self) -> None:
        """Wait for a token (and for any pause to end), then spend it."""
        while True:
            now = self.clock.now()
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
                continue
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
            self._at = max(self._at, now)
            if self._tokens >= 1.0 - _EPS:  # float sums: 0.1 * 10 may be 0.999...
                self._tokens = max(0.0, self._tokens - 1.0)
                return
            await self._sleep(max(_EPS, (1.0 - self._tokens) / self.rate))

    def pause_for(self, seconds: float | None) -> None:
        """Send nothing for ``seconds`` (Retry-After; None: ``default_pause_s``)."""
        wait = self.default_pause_s if seconds is None else seconds
        self._paused_until = max(self._paused_until, self.clock.now() + wait)
        self._tokens, self._at = 0.0, self._paused_until  # the bucket refills from then

    async def _sleep(self, seconds: float) -> None:
        self.waited_s += seconds
        await self.clock.sleep(seconds)
