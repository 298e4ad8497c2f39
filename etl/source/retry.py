"""Capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from etl.settings import DEFAULTS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = DEFAULTS.max_attempts
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)
