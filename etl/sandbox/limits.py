"""Rate limits, the feed's hidden throttle and the 30 s response cache, on the injected clock."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window resets (X-RateLimit-Reset)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class FixedWindow:
    """A fixed window per bucket, opened by the bucket's first request (the real limiter).

    Rejected requests do not count. ``peek`` reports without spending.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._buckets: dict[object, list[float]] = {}  # bucket -> [window start, used]

    def _state(self, bucket: object, now: float) -> list[float]:
        state = self._buckets.get(bucket)
        if state is None or now >= state[0] + self.window:
            state = [now, 0.0]
            self._buckets[bucket] = state
        return state

    def hit(self, bucket: object, limit: int, now: float, *, spend: bool = True) -> Verdict:
        state = self._state(bucket, now)
        reset = max(1, math.ceil(state[0] + self.window - now))
        used = int(state[1])
        if used >= limit:
            return Verdict(False, limit, 0, reset)
        if spend:
            used += 1
            state[1] = used
        return Verdict(True, limit, max(0, limit - used), reset)


class SlidingWindow:
    """At most ``limit`` accepted requests in any ``window`` seconds, per bucket."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._log: dict[object, deque[float]] = {}

    def hit(self, bucket: object, now: float) -> tuple[bool, float]:
        """(allowed, seconds until a slot frees when refused)."""
        log = self._log.setdefault(bucket, deque())
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) >= self.limit:
            return False, log[0] + self.window - now
        log.append(now)
        return True, 0.0


class ResponseCache:
    """Identical queries within ``ttl`` are served the stored body (X-Cache: HIT)."""

    def __init__(self, ttl: float, max_entries: int = 64) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes, str]] = OrderedDict()

    def get(self, key: str, now: float) -> tuple[bytes, str] | None:
        """(body, request id) of a fresh entry."""
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[0] + self.ttl:
            del self._entries[key]
            return None
        return entry[1], entry[2]

    def put(self, key: str, now: float, body: bytes, request_id: str) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (now, body, request_id)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
