"""GitHub's two rate limits, per user, on the sandbox clock.

Primary: ``primary_limit`` requests per fixed window opened by the user's first request;
``x-ratelimit-reset`` is the window's end in epoch seconds. Secondary: at most
``secondary_per_minute`` requests in any sliding minute, answered with ``retry-after``.
Rejected requests count toward neither.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from etl.sandbox.github.config import GithubConfig


@dataclass(frozen=True, slots=True)
class Primary:
    allowed: bool
    limit: int
    used: int
    reset: int  # epoch seconds

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - self.used)),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": "core",
        }


class Limits:
    def __init__(self, config: GithubConfig) -> None:
        self.config = config
        self._windows: dict[int, list[float]] = {}  # user -> [start, used]
        self._recent: dict[int, deque[float]] = {}

    def peek(self, user: int, now: float) -> Primary:
        c = self.config
        window = self._windows.get(user)
        length = c.scaled(c.primary_window)
        if window is None or now >= window[0] + length:
            return Primary(True, c.primary_limit, 0, math.ceil(now + length))
        used = int(window[1])
        return Primary(used < c.primary_limit, c.primary_limit, used, math.ceil(window[0] + length))

    def primary(self, user: int, now: float) -> Primary:
        """Spend one request of the user's window (when any is left)."""
        c = self.config
        length = c.scaled(c.primary_window)
        window = self._windows.get(user)
        if window is None or now >= window[0] + length:
            window = self._windows[user] = [now, 0.0]
        verdict = self.peek(user, now)
        if verdict.allowed:
            window[1] += 1
            return Primary(True, verdict.limit, verdict.used + 1, verdict.reset)
        return verdict

    def secondary(self, user: int, now: float) -> float | None:
        """None when allowed (and counted), else the retry-after in seconds."""
        c = self.config
        recent = self._recent.setdefault(user, deque())
        minute = c.scaled(60.0)
        while recent and recent[0] <= now - minute:
            recent.popleft()
        if len(recent) >= c.secondary_per_minute:
            return c.scaled(c.secondary_retry_after)
        recent.append(now)
        return None
