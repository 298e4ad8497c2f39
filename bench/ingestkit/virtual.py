"""Issue 11's scenarios in virtual time: what the client's budget logic makes of the budget.

The ``etl ingest`` runs (``latency.py``) measure the whole program, on a shared 2-core box
whose load decides much of the result. This model keeps only the logic under test, on a
``FakeClock`` (no CPU, HTTP or PostgreSQL time at all): both lanes as the source builds them
(the feed's ``AdaptiveRate`` learning its window from the spec's prior, the ``/events``
``TokenBucket`` synced from the verdict's headers), each behind its ``InFlight`` limit with
the run's defaults, against the sandbox's own throttles (``SlidingWindow`` / ``FixedWindow``)
and capacity model (``SharedCapacity``), time-scaled like the sandbox. Pages come from the
run's own shards: the planner's plan over the sandbox's 30 days of uniformly dense events,
handed out by the run's ``ShardScheduler`` (one page in flight per shard) and split by its
``Splitter`` (``planner.split``) when a fetcher with budget finds no idle shard; each
shard's last page is short (the feed is asked ``since`` its lower bound; ``/events`` pages
cross it), as in the real runs. No loaders, page credits or CPU time. Per scenario: virtual
seconds for the dataset, the share of the budget bound, 429s, the peak in flight per lane,
the splits.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from typing import Any, cast

from etl import planner
from etl.clock import FakeClock
from etl.feedrate import FIRST_WINDOW_PACE
from etl.inflight import InFlight
from etl.models import Position, RunCounters, ShardState, StateStore
from etl.pipeline import PipelineOptions
from etl.ratelimit import AdaptiveRate, TokenBucket
from etl.sandbox import SandboxConfig
from etl.sandbox.capacity import PAGE_EVENTS, SharedCapacity
from etl.sandbox.limits import FixedWindow, SlidingWindow
from etl.scheduler import ShardScheduler
from etl.settings import DEFAULTS
from etl.splitting import Splitter
from ingestkit.common import PAGE, TARGET_429_SHARE, TARGET_BUDGET_SHARE
from ingestkit.runs import Ctx

# a client whose bucket counts a window from the request's send (else from its answer)
_SENT_AT = "sent_at" in inspect.signature(TokenBucket.sync).parameters
# a client whose shards record the density they are read at (splits cut at a page's end)
_FETCHED = "fetched" in ShardState.__dataclass_fields__

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
    is_feed: bool
    requests: int = 0
    refused: int = 0
    pages: int = 0  # answered with a page (full or short)


class _Data:
    """The sandbox's dataset as the shards see it: ``events`` uniformly dense over its
    ``span_days`` below its newest timestamp (the real one's density varies by far less
    than a page within a shard)."""

    def __init__(self, sb: SandboxConfig) -> None:
        self.newest = sb.newest_ts_ms
        self.oldest = sb.newest_ts_ms - int(sb.span_days * planner.DAY_MS)
        self.per_ms = sb.events / (self.newest - self.oldest)

    def between(self, lower: int | None, top: int) -> float:
        """Events with ``lower < ts <= top``."""
        low = self.oldest if lower is None else max(lower, self.oldest)
        return max(0.0, (min(top, self.newest) - low) * self.per_ms)


class _Store:
    """The splitter's state store: every split is recorded."""

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        return True


class _Model:
    def __init__(
        self, latency: float, capacity: float, scale: float, events: int, **options: Any
    ) -> None:
        self.clock = FakeClock()
        sb = SandboxConfig(
            events=events, latency_per_page=latency, capacity=capacity, time_scale=scale
        )
        self.server = SharedCapacity(sb)
        self.throttle = SlidingWindow(sb.feed_throttle, sb.scaled(sb.feed_window))
        self.fixed = FixedWindow(sb.scaled(sb.window))
        self.limit = sb.rate_limit
        self.data = _Data(sb)
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
            ),
            is_feed=True,
        )
        self.events = _Lane(
            InFlight(
                clock,
                initial=DEFAULTS.events_concurrency,
                maximum=cap,
                budget_ready=self.bucket.ready,
                max_latency_s=half_timeout,
            ),
            is_feed=False,
        )
        # the run's plan, scheduler and splitter
        self.options = PipelineOptions(**options)
        head = Position(self.data.newest)
        self.shards = planner.full_plan(
            head, shards=self.options.shards, span_ms=self.options.span_ms
        )
        self.scheduler = ShardScheduler(list(self.shards))
        self.counters = RunCounters()
        self.splitter = Splitter(
            cast(StateStore, _Store()),
            self.options,
            self.counters,
            fetchers=lambda: self.feed.slots.limit + self.events.slots.limit,
            on_new=self.shards.append,
        )
        self.loaded = 0.0
        self.out_of_range = 0.0
        self.finished_at = 0.0

    async def _answer(self, lane: _Lane, events: int) -> bool:
        """One request's trip through the limiter in front and the server: True when it
        was answered with a page."""
        now = self.clock.now()
        if lane.is_feed:
            ok, _ = self.throttle.hit("key", now)
            verdict = None
        else:
            verdict = self.fixed.hit("key", self.limit, now)
            ok = verdict.allowed
        lane.requests += 1
        if not ok:  # a 429 comes from the limiter in front, at once
            await self.clock.sleep(0.005)
            lane.refused += 1
            if verdict is not None:
                self.bucket.pause_for(verdict.reset)
            return False
        await self.server.hold(events, self.clock.sleep)
        if verdict is not None:
            if _SENT_AT:
                self.bucket.sync(verdict.limit, verdict.remaining, verdict.reset, sent_at=now)
            else:
                self.bucket.sync(verdict.limit, verdict.remaining, verdict.reset)
        return True

    async def _budget(self, lane: _Lane) -> float | None:
        slots = lane.slots
        slots.waiting_budget(True)
        try:
            return await self.rate.acquire() if lane.is_feed else await self.bucket.acquire()
        finally:
            slots.waiting_budget(False)

    async def _one(self, lane: _Lane) -> None:
        """What ``etl.fetching`` does for one page: budget, a shard (split one off a busy
        shard when none is idle), the request, the shard's next page."""
        ticket = await self._budget(lane)
        if not self.scheduler.has_idle:
            await self.splitter.steal(self.scheduler)
        shard = await self.scheduler.take()
        if shard is None:
            return
        slots = lane.slots
        sent = slots.sent()
        try:
            ok = await self._answer(lane, PAGE_EVENTS)
            slots.answered(sent, throttled=not ok)
            if lane.is_feed:
                if ok:
                    self.rate.on_success(ticket)
                else:
                    self.rate.on_throttled(ticket)
            if ok:
                self._page(lane, shard)
        finally:
            await self.scheduler.release(shard)

    def _page(self, lane: _Lane, shard: ShardState) -> None:
        """The shard's next page, as the server cuts it now: the feed is asked ``since``
        the shard's lower bound (a short last page), ``/events`` pages run past it (the
        rest is out of range)."""
        lane.pages += 1
        top = shard.position.ts_ms if shard.position is not None else shard.upper_ts
        assert top is not None
        avail = self.data.between(shard.lower_ts, top)
        got = min(float(PAGE_EVENTS), avail)
        self.loaded += got
        shard.events += round(got)
        shard.pages += 1
        if not lane.is_feed:
            below = self.data.between(None, top) - avail
            self.out_of_range += min(float(PAGE_EVENTS) - got, below)
        if avail <= PAGE_EVENTS:
            shard.status = "done"
            return
        shard.status = "running"
        span = math.ceil(PAGE_EVENTS / self.data.per_ms)
        shard.position = Position(top - span)
        if _FETCHED:
            shard.fetched += PAGE_EVENTS
            shard.fetched_ms += span

    async def _fetcher(self, lane: _Lane) -> None:
        while not self.scheduler.drained.is_set():
            await lane.slots.acquire()
            try:
                await self._one(lane)
            finally:
                lane.slots.release()

    async def run(self) -> None:
        # the head probe: one feed request for one event, before any fetcher
        ticket = await self.rate.acquire()
        if await self._answer(self.feed, 1):
            self.rate.on_success(ticket)
        fetchers = [
            asyncio.ensure_future(self._fetcher(lane))
            for lane in (self.feed, self.events)
            for _ in range(lane.slots.maximum)
        ]
        await self.scheduler.drained.wait()
        self.finished_at = self.clock.now()
        for f in fetchers:
            f.cancel()
        await asyncio.gather(*fetchers, return_exceptions=True)


def run_virtual(name: str, events: int, **options: Any) -> dict[str, Any]:
    """One scenario in virtual time (``options``: PipelineOptions fields to try)."""
    latency, capacity, scale = VIRTUAL_SCENARIOS[name]
    model = _Model(latency, capacity, scale, events, **options)
    asyncio.run(model.run())
    bound = PAGE * (10 / 60 + 200 / 300) * scale
    requests = model.feed.requests + model.events.requests
    refused = model.feed.refused + model.events.refused
    seconds = model.finished_at
    return {
        "virtual_s": round(seconds, 1),
        "time_scale": scale,
        "budget_share": round(events / seconds / bound, 4),
        "requests": requests,
        "rate_limited": refused,
        "share_429": round(refused / requests, 5),
        "loaded": round(model.loaded),
        "splits": model.counters.extra.get("splits", 0),
        "out_of_range": round(model.out_of_range),
        "pages": {"feed": model.feed.pages, "events": model.events.pages},
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
        "splits; peak in flight; feed window learnt (cap)"
    )
    for name, r in rows.items():
        peaks = ", ".join(f"{lane} {n}" for lane, n in r["peak_in_flight"].items())
        print(
            f"{name:<16} {r['time_scale']:>5g} {r['virtual_s']:>8.1f} {r['budget_share']:>7.1%} "
            f"{r['rate_limited']:>3}/{r['requests']:<5}  {r['splits']}; {peaks}; "
            f"{r['feed_window_learnt_s']:g} s ({r['feed_cap_learnt']})"
        )
