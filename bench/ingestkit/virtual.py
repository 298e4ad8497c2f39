"""Issue 11's scenarios in virtual time: what the client's budget logic makes of the budget.

The ``etl ingest`` runs (``latency.py``) measure the whole program, on a shared 2-core box
whose load decides much of the result. This model keeps only the logic under test, on a
``FakeClock`` (no CPU, HTTP or PostgreSQL time at all): both lanes as the source builds them
(the feed's ``AdaptiveRate`` learning its window from the spec's prior, the ``/events``
``TokenBucket`` synced from the verdict's headers), each behind its ``InFlight`` limit with
the run's defaults, against the sandbox's own throttles (``SlidingWindow`` / ``FixedWindow``)
and capacity model (``SharedCapacity``), time-scaled like the sandbox. Pages are one queue (no
shards, splits, loaders or page credits). Per scenario: virtual seconds for the dataset, the
share of the budget bound, 429s, the peak in flight per lane.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from etl.clock import FakeClock
from etl.feedrate import FIRST_WINDOW_PACE
from etl.inflight import InFlight
from etl.ratelimit import AdaptiveRate, TokenBucket
from etl.sandbox import SandboxConfig
from etl.sandbox.capacity import PAGE_EVENTS, SharedCapacity
from etl.sandbox.limits import FixedWindow, SlidingWindow
from etl.settings import DEFAULTS
from ingestkit.common import PAGE, TARGET_429_SHARE, TARGET_BUDGET_SHARE
from ingestkit.runs import Ctx

# name -> (latency per page, capacity (0: constant latency), time scale)
VIRTUAL_SCENARIOS: dict[str, tuple[float, float, float]] = {
    "real-limits": (3.5, 0.0, 10.0),
    "shared-capacity": (3.5, 5500.0, 10.0),
    "slow-server": (6.0, 5500.0, 10.0),
    "fast-server": (0.1, 5500.0, 10.0),
    "scale-1": (3.5, 5500.0, 1.0),
}


@dataclass
class _Lane:
    slots: InFlight
    requests: int = 0
    refused: int = 0


class _Model:
    def __init__(self, latency: float, capacity: float, scale: float, pages: int) -> None:
        self.clock = FakeClock()
        sb = SandboxConfig(events=1, latency_per_page=latency, capacity=capacity, time_scale=scale)
        self.server = SharedCapacity(sb)
        self.throttle = SlidingWindow(sb.feed_throttle, sb.scaled(sb.feed_window))
        self.fixed = FixedWindow(sb.scaled(sb.window))
        self.limit = sb.rate_limit
        clock = self.clock
        # as etl.source.datasync builds them against a server of unknown time scale
        self.rate = AdaptiveRate(
            200 / 300 * FIRST_WINDOW_PACE,
            clock,
            max_per_s=50.0,
            prior_per_s=200 / 300,
            window_s=300.0,
            learn_window=True,
        )
        self.bucket = TokenBucket(10 / 60, 10, clock)
        cap, half_timeout = DEFAULTS.max_in_flight, DEFAULTS.request_timeout_s / 2
        self.feed = _Lane(
            InFlight(
                clock,
                initial=DEFAULTS.feed_concurrency,
                maximum=cap,
                budget_ready=self.rate.ready,
                max_latency_s=half_timeout,
            )
        )
        self.events = _Lane(
            InFlight(
                clock,
                initial=DEFAULTS.events_concurrency,
                maximum=cap,
                budget_ready=self.bucket.ready,
                max_latency_s=half_timeout,
            )
        )
        self.pages, self.left, self.done = pages, pages, 0
        self.finished_at = 0.0

    async def _one(self, lane: _Lane, is_feed: bool) -> None:
        slots = lane.slots
        slots.waiting_budget(True)
        try:
            ticket = await self.rate.acquire() if is_feed else await self.bucket.acquire()
        finally:
            slots.waiting_budget(False)
        if self.left <= 0:
            return
        self.left -= 1
        lane.requests += 1
        sent = slots.sent()
        now = self.clock.now()
        if is_feed:
            ok, _ = self.throttle.hit("key", now)
            verdict = None
        else:
            verdict = self.fixed.hit("key", self.limit, now)
            ok = verdict.allowed
        if not ok:  # a 429 comes from the limiter in front, at once
            await self.clock.sleep(0.005)
            slots.answered(sent, throttled=True)
            if is_feed:
                self.rate.on_throttled(ticket)
            elif verdict is not None:
                self.bucket.pause_for(verdict.reset)
            lane.refused += 1
            self.left += 1
            return
        await self.server.hold(PAGE_EVENTS, self.clock.sleep)
        slots.answered(sent)
        if is_feed:
            self.rate.on_success(ticket)
        elif verdict is not None:
            self.bucket.sync(verdict.limit, verdict.remaining, verdict.reset)
        self.done += 1
        if self.done == self.pages:
            self.finished_at = self.clock.now()

    async def _fetcher(self, lane: _Lane, is_feed: bool) -> None:
        while self.done < self.pages:
            if self.left <= 0:  # the last pages are out: one may still come back refused
                await self.clock.sleep(0.05)
                continue
            await lane.slots.acquire()
            try:
                await self._one(lane, is_feed)
            finally:
                lane.slots.release()

    async def run(self) -> None:
        fetchers = [
            self._fetcher(lane, is_feed)
            for lane, is_feed in ((self.feed, True), (self.events, False))
            for _ in range(lane.slots.maximum)
        ]
        await asyncio.gather(*fetchers)


def run_virtual(name: str, events: int) -> dict[str, Any]:
    latency, capacity, scale = VIRTUAL_SCENARIOS[name]
    pages = -(-events // PAGE)
    model = _Model(latency, capacity, scale, pages)
    asyncio.run(model.run())
    bound = PAGE * (10 / 60 + 200 / 300) * scale
    requests = model.feed.requests + model.events.requests
    refused = model.feed.refused + model.events.refused
    seconds = model.finished_at
    return {
        "virtual_s": round(seconds, 1),
        "time_scale": scale,
        "budget_share": round(pages * PAGE / seconds / bound, 4),
        "requests": requests,
        "rate_limited": refused,
        "share_429": round(refused / requests, 5),
        "peak_in_flight": {"feed": model.feed.slots.peak, "events": model.events.slots.peak},
        "feed_window_learnt_s": round(model.rate.window_s, 2),
        "feed_cap_learnt": model.rate.cap,
    }


def scenario_virtual(ctx: Ctx) -> None:
    out: dict[str, Any] = {}
    for name in VIRTUAL_SCENARIOS:
        out[name] = r = run_virtual(name, ctx.events)
        share, share_429 = r["budget_share"], r["share_429"]
        ctx.target(f"virtual {name}: ÷ budget bound", share, ">=", TARGET_BUDGET_SHARE, "%")
        ctx.target(f"virtual {name}: 429s ÷ requests", share_429, "<=", TARGET_429_SHARE, "%")
    ctx.results["virtual"] = out


def print_virtual(ctx: Ctx) -> None:
    rows = ctx.results.get("virtual")
    if not rows:
        return
    print(
        f"\n{'virtual time':<16} {'scale':>5} {'seconds':>8} {'÷ bound':>7} {'429s':>9}  "
        "peak in flight; feed window learnt (cap)"
    )
    for name, r in rows.items():
        peaks = ", ".join(f"{lane} {n}" for lane, n in r["peak_in_flight"].items())
        print(
            f"{name:<16} {r['time_scale']:>5g} {r['virtual_s']:>8.1f} {r['budget_share']:>7.1%} "
            f"{r['rate_limited']:>3}/{r['requests']:<5}  {peaks}; "
            f"{r['feed_window_learnt_s']:g} s ({r['feed_cap_learnt']})"
        )
