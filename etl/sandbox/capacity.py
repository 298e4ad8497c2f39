"""Server capacity shared by the pages in flight: latency that grows with concurrency.

The spec (datasync-api.md §6) records a feed page of ~3.5 s for one worker (~1,400 ev/s)
and throughput growing *sub-linearly* with workers: 5 → 2,500 ev/s, 10 → 3,125,
20 → 4,184, capped at ~5-6k ev/s "regardless of parallelism". Modelled as a capacity shared
by the ``n`` pages in flight::

    C(n) = min(cap, base_rate * n ** exponent)      base_rate = 5000 / latency_per_page

and a page arriving when it makes ``n`` in flight takes ``events / (C(n) / n)`` seconds (its
equal share, fixed at arrival). One page alone takes ``latency_per_page``; ``n`` closed-loop
workers get ``C(n)`` together. ``exponent`` 0.35 fits the recorded figures within 3 %
(1,429 / 2,509 / 3,198 / 4,076 ev/s); ``exponent`` 1 is a constant latency up to the cap.
All in real seconds and events/s: ``time_scale`` divides latencies and multiplies the cap.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from etl.sandbox.config import SandboxConfig

PAGE_EVENTS = 5000  # ``latency_per_page`` is for a page of this size

Sleep = Callable[[float], Awaitable[None]]


class SharedCapacity:
    """Pages in flight (every data request: ``/events`` and the feed) and their latency."""

    def __init__(self, config: SandboxConfig) -> None:
        self.base_s = config.scaled(config.latency_per_page)  # one 5000-event page alone
        self.cap = config.capacity * config.time_scale  # events per sandbox second; 0: none
        self.exponent = config.capacity_exponent
        self.in_flight = 0
        self.peak = 0

    def rate(self, n: int) -> float:
        """Events/s the server delivers with ``n`` pages in flight (``inf`` without latency)."""
        if self.base_s <= 0:
            return float("inf")
        base_rate = PAGE_EVENTS / self.base_s
        if self.cap <= 0:  # no sharing: every page takes the base latency
            return base_rate * n
        return min(self.cap, base_rate * math.pow(n, self.exponent))

    def admit(self, events: int) -> float:
        """A page of ``events`` arrives: its latency in sandbox seconds (call ``leave`` after)."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.base_s <= 0 or events <= 0:
            return 0.0
        n = self.in_flight
        return events * n / self.rate(n)

    def leave(self) -> None:
        self.in_flight -= 1

    async def hold(self, events: int, sleep: Sleep = asyncio.sleep) -> None:
        """Wait as long as a page of ``events`` takes now."""
        delay = self.admit(events)
        try:
            if delay > 0:
                await sleep(delay)
        finally:
            self.leave()
