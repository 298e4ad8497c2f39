"""etl.feedrate: how the feed's limiter learns a hidden sliding-window throttle (no headers),
against a model of it on virtual time only: no test sleeps for real."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import pytest

from etl.clock import FakeClock
from etl.feedrate import FIRST_WINDOW_PACE, STEP, AdaptiveRate

PRIOR = 200 / 300  # the spec's ~200 per 5 min


class Throttle:
    """The sandbox's feed throttle: at most ``limit`` accepted requests in any ``window_s``
    (refused ones do not count), counted when a request arrives."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.log: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        while self.log and self.log[0] <= now - self.window_s:
            self.log.popleft()
        if len(self.log) >= self.limit:
            return False
        self.log.append(now)
        return True


class Feed:
    """``workers`` fetchers through ``rate`` against ``throttle`` until ``until`` (virtual s):
    a page takes ``latency(now)``, a 429 comes back at once (10 ms)."""

    def __init__(self, rate: AdaptiveRate, clock: FakeClock, throttle: Throttle) -> None:
        self.rate, self.clock, self.throttle = rate, clock, throttle
        self.starts: list[float] = []
        self.refused: list[float] = []
        self.waits: list[tuple[float, float]] = []  # (asked, waited)

    async def run(self, workers: int, until: float, latency: Callable[[float], float]) -> None:
        async def fetcher() -> None:
            while True:
                asked = self.clock.now()
                ticket = await self.rate.acquire()
                self.waits.append((asked, ticket - asked))
                self.starts.append(ticket)
                if self.throttle.admit(self.clock.now()):
                    await self.clock.sleep(latency(ticket))
                    self.rate.on_success(ticket)
                else:
                    self.refused.append(ticket)
                    await self.clock.sleep(0.01)
                    self.rate.on_throttled(ticket)

        fetchers = [asyncio.ensure_future(fetcher()) for _ in range(workers)]
        await self.clock.sleep(until)
        for f in fetchers:
            f.cancel()
        await asyncio.gather(*fetchers, return_exceptions=True)


def feed_rate(clock: FakeClock) -> AdaptiveRate:
    """As ``etl.source.datasync`` builds it: the spec's window a prior, learnt."""
    return AdaptiveRate(
        PRIOR * FIRST_WINDOW_PACE, clock, prior_per_s=PRIOR, window_s=300.0, learn_window=True
    )


async def test_the_learnt_window_is_refined_down_to_the_throttles_with_one_more_429() -> None:
    """The spec's throttle x10 (200 per 30 s) against the 300 s prior, pages of 0.35 s: the
    probes bracket the window (a 429 at 1.3 x the first 200 starts' span, a pass at 1.69 x:
    ~13 % over), then tests, one at a time, each below the smallest age seen to pass, move
    it down until one is refused: the window ends within 2 % of the throttle's (it used to
    stay at the bracket's upper end once a 429 showed its geometric mean too short), at the
    cost of one 429 more, and the lane was not paused for it."""
    clock = FakeClock()
    rate = feed_rate(clock)
    feed = Feed(rate, clock, Throttle(200, 30.0))
    await feed.run(32, 80.0, lambda _: 0.35)
    assert rate.window_learned and rate.cap == 200
    assert 30.0 <= rate.window_s <= 30.0 * 1.02
    assert len(feed.refused) == 3  # the checkpoint, the probe at 1.3 x, the last test
    # from the first pass on, the throttle was used at its rate: 200 more per 30 s
    assert len(feed.starts) - len(feed.refused) >= 200 + 200 / 30 * (80.0 - 30.0) * 0.97


async def test_a_feed_meeting_the_throttle_late_learns_it_from_one_429_without_idling() -> None:
    """Pages of 6 s hold 25 fetchers to ~4 starts/s, under a throttle of 200 per 30 s, until
    the server speeds up (0.3 s pages from 60 s on): the first 200 starts span > 30 s, so
    the checkpoint passes. It holds the lane a quarter of a second, not the 6 s round trip
    (the others go on once it is not refused within its wait); then each start younger than
    any seen to pass goes alone, so when the feed outruns the throttle exactly one is
    refused and the window is the smallest age that passed: within 2 % of 30 s, no probes,
    no back-off."""
    clock = FakeClock()
    rate = feed_rate(clock)
    feed = Feed(rate, clock, Throttle(200, 30.0))
    await feed.run(25, 150.0, lambda t: 6.0 if t < 60.0 else 0.3)
    assert len(feed.refused) == 1
    assert rate.window_learned and rate.cap == 200
    assert 30.0 <= rate.window_s <= 30.0 * 1.02
    checkpoint = feed.starts[200]  # the first start with the prior's cap before it
    held = [waited for asked, waited in feed.waits if checkpoint <= asked < checkpoint + 6]
    assert held and max(held) < 0.3  # not a round trip (6 s)
    accepted = len(feed.starts) - len(feed.refused)
    assert accepted >= 200 / 30 * 150.0 * 0.8


async def test_a_429_just_past_a_refined_window_grows_it_a_step_without_probing() -> None:
    """Once refined, a 429 to a start the window's age old (our send was late, or the
    server read it late) means the window is a little longer: it grows by STEP and the
    lane carries on at that pace; it does not start probing again (an idle of several
    seconds, and more 429s)."""
    clock = FakeClock()
    rate = feed_rate(clock)
    feed = Feed(rate, clock, Throttle(200, 30.0))
    await feed.run(32, 80.0, lambda _: 0.35)
    window = rate.window_s
    ticket = await rate.acquire()  # at the slot: its age is the window (+ the margin)
    await clock.sleep(0.01)
    rate.on_throttled(ticket)
    assert rate._probing_since is None
    assert rate.window_s == pytest.approx(window * (1 + STEP), rel=0.01)
    assert await rate.acquire() - clock.now() < 1.0
