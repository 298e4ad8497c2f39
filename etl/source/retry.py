"""Capped exponential backoff with jitter, and the log line a retry earns."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from etl.models import Clock
from etl.settings import DEFAULTS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = DEFAULTS.max_attempts
    # Until the server has answered once, "cannot connect" gets only this many tries: a
    # wrong URL or a server that is down fails in seconds, not after minutes of backoff.
    startup_attempts: int = DEFAULTS.startup_attempts
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


class RetryLog:
    """Tells the user about retries without flooding: the first one at once, then at most
    one line per ``interval_s`` (the progress cadence), each saying how many were held back.

    A line names the reason, the attempt and the wait: ``retrying events in 3.2 s (attempt
    4 of 10): cannot connect to 127.0.0.1:8080: connection refused``.
    """

    def __init__(
        self, emit: Callable[[str], None], clock: Clock, *, interval_s: float = 10.0
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._interval_s = interval_s
        self._last: float | None = None
        self._held = 0

    def __call__(self, lane: str, reason: str, attempt: int, attempts: int, wait_s: float) -> None:
        now = self._clock.now()
        if self._last is not None and now - self._last < self._interval_s:
            self._held += 1
            return
        more = f" (+{self._held} more retries since the last such line)" if self._held else ""
        self._emit(
            f"retrying {lane} in {wait_s:.1f} s (attempt {attempt + 1} of {attempts}): "
            f"{reason}{more}"
        )
        self._last, self._held = now, 0
