"""The sandbox's notion of time: epoch seconds from an injectable clock.

Every window, TTL, expiry and live event reads ``clock.time()``; tests use ``FakeClock``
and ``advance()`` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class SandboxClock(Protocol):
    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_771_533_513.323) -> None:
        self._now = float(start)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds

    def set(self, epoch_seconds: float) -> None:
        self._now = float(epoch_seconds)
