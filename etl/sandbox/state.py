"""Everything one running sandbox remembers, and the request counters tests read."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from etl.sandbox.capacity import SharedCapacity, Sleep
from etl.sandbox.clock import SandboxClock
from etl.sandbox.config import SandboxConfig
from etl.sandbox.databox.api import Databox
from etl.sandbox.dataset import Dataset
from etl.sandbox.faults import Faults
from etl.sandbox.limits import FixedWindow, ResponseCache, SlidingWindow
from etl.sandbox.render import Renderer

if TYPE_CHECKING:
    from etl.sandbox.sessions import SessionTable


@dataclass
class Stats:
    """Per endpoint label (events, event, feed, stream_access, sessions, session, metrics,
    submissions, index, stats, health, not_found): requests, statuses, 429s, faults."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    events_served: int = 0

    def record(self, label: str, status: int) -> None:
        self.requests[label] += 1
        self.statuses[label, status] += 1
        if status == 429:
            self.rate_limited[label] += 1

    def reset(self) -> None:
        self.requests.clear()
        self.statuses.clear()
        self.rate_limited.clear()
        self.faults.clear()
        self.cache_hits = 0
        self.events_served = 0


class State:
    def __init__(self, config: SandboxConfig, clock: SandboxClock, dataset: Dataset) -> None:
        self.config = config
        self.clock = clock
        self.dataset = dataset
        self.renderer = Renderer(dataset)
        self.limiter = FixedWindow(config.scaled(config.window))
        self.cache = ResponseCache(0.0 if config.unlimited else config.scaled(config.cache_ttl))
        self.feed_throttle = SlidingWindow(config.feed_throttle, config.scaled(config.feed_window))
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (api key, expiry)
        self.feed_requests = 0  # counted on arrival (stats count responses, after awaits)
        self.submissions: dict[str, list[dict[str, object]]] = {}
        self.submission_attempts: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}
        self.faults = Faults(config)
        self.capacity = SharedCapacity(config)
        # page latency waits on the clock when it can sleep (a test's virtual clock)
        self.sleep: Sleep = getattr(clock, "sleep", None) or asyncio.sleep
        # On real time, large pages are rendered in a worker thread: the event loop stays
        # free to answer what needs no rendering (a 429, a token) at once, as a server with
        # more than one worker would. On a test's virtual clock, rendering stays inline
        # (deterministic, and an idle loop must mean nothing is left to do).
        self.render_off_loop = self.sleep is asyncio.sleep
        self.stats = Stats()
        self.session_table: SessionTable | None = None
        self.databox = Databox(config.databox, clock, limited=config.limits_enabled)
        dataset.start_live(self.now_ms())

    def now(self) -> float:
        return self.clock.time()

    def now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def live(self) -> int:
        return self.dataset.live_count(self.now_ms())


STATE: web.AppKey[State] = web.AppKey("sandbox_state", State)
