"""``AdaptiveRate``: pacing plus a learned sliding-window cap for the feed's hidden throttle
(about 200 requests per 300 s, 429s without any header), its window learnt or given. All
time from an injected ``Clock``; cancellation-safe (a start is taken after the last await).
"""

from __future__ import annotations

import asyncio
import collections
import math

from etl.models import Clock
from etl.settings import FEED_WINDOW_S

_EPS = 1e-9
PROBE_GROWTH = 1.5  # after a 429, probes at gaps of cooldown x 1.5^k until one succeeds
# Learning the window: probe when the time since the oldest counted start has grown x1.3
# (and at the prior's window, when a step passes it): few 429s, whatever the window
PROBE_SPAN_GROWTH = 1.3
# Tests (a start whose age, the time since the cap's-th start before it, is below the
# smallest age seen to pass): one at a time; a test with no 429 within its wait (TEST_WAIT_S,
# or 1.5 x the 429s' smoothed latency if longer; the first, alone, FIRST_TEST_WAIT_S) counts
# as passed. They refine a learnt window downwards until one is refused (``_test_at``), and
# find a throttle that a slow feed meets late with one 429 and no lane held a round trip.
TEST_WAIT_S, FIRST_TEST_WAIT_S = 0.05, 0.25
STEP = 0.015  # a 429 just past the learnt window (a late send): the window grows this much
NARROW_BRACKET = 1.25  # learnt from fewer starts than the prior's cap: a wider bracket's
# geometric mean is tentative (``_tentative``: a 429 moves it up the bracket)
# Learnt from a full prior cap of starts (the cap is the prior's): pacing allows twice the
# cap's average, so the cap binds and the slots freed while probing are caught up. Learnt
# from fewer (cap and window both guessed): 5 % above the average, bursts spread.
LEARNED_PACE, GUESSED_PACE = 2.0, 1.05
# Learning the window, the pace before the first 429: this many times the prior's average,
# and no faster until a checkpoint passes. Fast enough to use the throttle's empty window
# (a burst), slow enough that the prior's cap of starts spans a sixteenth of its window, so
# a shorter real window is bracketed in few probes (each one a 429).
FIRST_WINDOW_PACE = 16.0
PRIOR_SPREAD = 4.0  # a learned window is at most this many times the prior
RAMP_FROM, RAMP_STEP = 2.0, 0.5  # slow start: x1.25 per answer to 2 x prior, then + 0.5 x prior


class AdaptiveRate:
    """Pacing plus a learned sliding-window cap, for a throttle that sends no headers.

    * ``acquire()`` grants one start per ``1 / rate`` seconds (no burst credit) and, once
      the throttle's capacity is known, no more than ``cap`` starts in any ``window_s``
      (a slot freed by a start leaving the window is used ``margin_s`` late). It returns the
      grant time, the request's ticket; ``on_success``/``on_throttled`` take it back as
      ``started_at``. Without it, answers are matched to starts in FIFO order.
    * ``on_success()``: until the first throttle, slow start (the rate grows ``slow_start``
      times per answer: an unthrottled feed is used at full speed within seconds); after
      it, additive increase by ``increase_per_s`` (req/s), up to ``max_per_s``
      and 5 % above the cap's rate, only while pacing is what holds requests back (not the
      cap, a pause, or too few requests in flight).
    * ``on_throttled()``: every waiter pauses ``cooldown_s``; then, unless the request started
      before the last decrease (it was in flight meanwhile: already accounted for), the
      cap := the starts in the window before the throttled one (at most the previous
      cap - 1, so it converges) and pacing drops to 5 % above the cap's average rate (the
      prior while the cap is provisional), so the cap binds and bursts are spread.
      ``window_s`` must be the throttle's window (300 s for the feed, per the spec): with
      a shorter real window the cap is too strict (slow, but no 429s), with a longer one
      the cap-1 steps converge.
    * Probing: after ``probe_after_s`` without a throttle, the cap grows by one. A cap
      learned within the first window of our own log is provisional (the throttle may have
      counted someone else's requests too): once our log spans a window it is dropped, and
      the next 429 teaches it again from our own requests alone.

    * Learning the window (``learn_window``, the feed's default): ``window_s`` is a prior.
      A start's *age* is the time since the prior's cap-th start before it (ours refused
      not counted). Until the first 429, once the prior's cap of starts is in the prior
      window, a start younger than any seen to pass is a *test*: it goes alone (the others
      wait for the slot at the smallest age that passed, or for the test to settle: its
      answer, or no 429 within a quarter second at first, then 50 ms), so a throttle is
      met with one 429, not one per request in flight, and a feed slower than its throttle
      is not held a round trip per checkpoint. The first test refused after one passed
      gives the window (the smallest age that passed: a feed that met the throttle late).
      The first test refused gives a bracket's lower end: probes go when the time since
      the oldest of the cap's starts has grown x1.3 (the prior's window tried when a step
      passes it); the first success gives the window's upper end (``_learn``), and tests
      then move it down, one at a time, until one is refused (``_refining``): one 429 more
      for a window within a few % of the throttle's, for the rest of the run.

    Why a cap: a sliding window remembers. After a 429 the window is full of the recent
    past, so a merely lower rate keeps earning 429s until that past has aged out; mirroring
    the window in the client (its own start log) spends exactly what the throttle accepts.
    Throttled starts stay in the log (some throttles count refused requests too).
    """

    def __init__(
        self,
        initial_per_s: float,
        clock: Clock,
        *,
        max_per_s: float = 50.0,
        min_per_s: float = 0.01,
        increase_per_s: float = 0.002,
        cooldown_s: float | None = None,
        window_s: float = FEED_WINDOW_S,
        probe_after_s: float = 1800.0,
        margin_s: float | None = None,
        slow_start: float = 1.25,
        prior_per_s: float | None = None,
        learn_window: bool = False,
    ) -> None:
        if not 0 < min_per_s <= initial_per_s <= max_per_s:
            raise ValueError("need 0 < min_per_s <= initial_per_s <= max_per_s")
        self._clock = clock
        self.rate_per_s = initial_per_s
        self.max_per_s, self.min_per_s = max_per_s, min_per_s
        self.increase_per_s = increase_per_s
        # None: in proportion to the window (3 s and 1 s of the feed's 300 s)
        self.cooldown_s = window_s / 100 if cooldown_s is None else cooldown_s
        self.window_s = window_s
        self.prior_window_s = window_s
        self.probe_after_s = probe_after_s
        self.margin_s = window_s / 300 if margin_s is None else margin_s
        self.slow_start = slow_start  # growth factor per answered request until a throttle
        # the best guess of the throttle's rate before it is learned (the spec's, for the feed)
        self.prior_per_s = (
            min(initial_per_s, max_per_s / 10) if prior_per_s is None else prior_per_s
        )
        self.cap: int | None = None  # learned: starts the throttle accepts per window_s
        self.throttled = 0
        self._next_start = float("-inf")
        self.paused_until = float("-inf")
        self._decreased_at = float("-inf")
        self._paced = False  # the last grant waited for its pacing slot (nothing else)
        self.provisional = False  # the cap was learned before a full window of our own log
        self._first_start: float | None = None
        self._starts: collections.deque[float] = collections.deque()  # the last window_s
        self._pending: collections.deque[float] = collections.deque()  # not answered yet
        # Window learning (``learn_window``): ``window_s`` is then a prior. The first 429
        # starts a back-off with probes at doubling intervals; the first request to succeed
        # again tells the window (see ``_learn``).
        self.learn_window = learn_window
        self.window_learned = False
        self._probing_since: float | None = None  # start of the first throttled request
        self._probe_gap = self.cooldown_s
        self._probe_origin = 0.0  # the oldest counted start when probing began
        self._full_cap = False  # the window was first learnt after a full prior cap of starts
        self._span_probes = False  # probing by the span since it (a full prior cap seen)
        self._probe_at = float("-inf")  # learning the window: no start before the next probe
        self._last_refused = 0.0  # start of the last probe refused
        self._learnt = asyncio.Event()  # set when the window is learnt or a test settles
        self._snapshot: list[float] = []  # our starts before the first 429
        # Tests (learning the window): until the first 429, once the prior's cap of starts
        # is in the prior window (the spec's 200 per 300 s), a start whose age (the time
        # since the cap's-th start before it, ours refused not counted) is below the
        # smallest age seen to pass (``_ok_age``) is a test: one at a time, at most STEP
        # below it, and the others wait for the slot at ``_ok_age`` meanwhile. The first
        # (the checkpoint) meets a throttle with one request, not every one in flight.
        # After the window is learnt from probes (``_refining``), tests move it down from
        # the probe that passed to just above the first age refused.
        self._probe_out: float | None = None  # the test's start, unsettled
        self._test_age = 0.0
        self._ok_age = float("inf")  # the smallest age seen to pass
        self._low_age = 0.0  # the largest age refused
        self._refining = False
        self._slow_429 = 0.0  # the 429s' latency (start to answer), smoothed
        self._refused: collections.deque[float] = collections.deque()  # refused starts
        self._ages: collections.deque[list[float]] = collections.deque()  # [start, age]
        self._window_high: float | None = None  # a tentative window's bracket's upper end
        self._tentative_until = float("-inf")

    @property
    def ceiling_per_s(self) -> float | None:
        return None if self.cap is None else self.cap / self.window_s

    async def acquire(self) -> float:
        """Wait for the next slot; returns the clock time the request may start."""
        paced = False
        while True:
            now = self._clock.now()
            self._forget(now)
            self._review(now)
            self._settle(now)
            at, age, test = self._test_at(now)
            if now >= at - _EPS:
                if test and age is not None:
                    self._probe_out, self._test_age = now, age
                self._paced = paced
                # on the ideal timeline when less than an interval late: a grant woken late
                # (a busy event loop) does not lose its time; after idling, no credit
                gap = 1.0 / self.rate_per_s
                late = now - self._next_start
                self._next_start = (self._next_start if 0 <= late < gap else now) + gap
                if self._probing_since is not None:  # one probe per (growing) gap
                    if self._span_probes:
                        self._probe_at = self._next_probe(now)
                    else:
                        self.paused_until = max(self.paused_until, now + self._probe_gap)
                        self._probe_gap *= PROBE_GROWTH
                if age is not None:
                    self._ages.append([now, age])
                self._starts.append(now)
                self._pending.append(now)
                if self._first_start is None:
                    self._first_start = now
                return now
            paced = at == self._next_start
            await self._sleep(at - now)

    def _testing(self) -> bool:
        """Whether starts below the smallest age seen to pass go as tests (one at a time)."""
        if not self.learn_window or self._probing_since is not None:
            return False
        return self._refining or not self.window_learned

    def _test_at(self, now: float) -> tuple[float, float | None, bool]:
        """(the earliest start, its age if the cap's-th start before it is known, whether
        it is a test). While testing, a start younger than ``_ok_age`` is a test, one at a
        time (each settles, passed, after its wait); the others wait for the slot there."""
        n = self.cap or self._prior_cap()
        oldest = self._counted_oldest(n)
        if not self._testing() or oldest is None:
            at = self._earliest()
            return at, None if oldest is None else max(now, at) - oldest, False
        base = self._earliest(slot=False)
        safe = oldest + self._ok_age + (self.margin_s if self.window_learned else 0.0)
        if self._probe_out is not None:  # a test unsettled: the verified slot, or its end
            at = max(base, min(safe, self._probe_out + self._test_wait()))
            return at, max(now, at) - oldest, False
        # at most STEP below: after a gap in the starts a window ago, a start's age drops
        floor = max(self._low_age, self._ok_age * (1 - STEP) if self._ok_age < math.inf else 0.0)
        if self._refining and self._low_age * (1 + STEP) >= self._ok_age:
            self._refining = False  # narrow: the window is known
            self.rate_per_s = self._learned_rate()
            at = self._earliest()
            return at, max(now, at) - oldest, False
        test_at = max(base, oldest + floor)
        if test_at < safe:
            return test_at, max(now, test_at) - oldest, True
        at = max(base, safe)
        return at, max(now, at) - oldest, False

    def _counted_oldest(self, n: int) -> float | None:
        """The ``n``-th most recent of our starts not refused (None: fewer)."""
        starts, refused = self._starts, self._refused
        k = n
        while len(starts) >= k:
            oldest = starts[-k]
            if k - sum(1 for r in refused if r >= oldest) >= n:
                return oldest
            k += 1
        return None

    def _test_wait(self) -> float:
        first = FIRST_TEST_WAIT_S if self._ok_age == math.inf else TEST_WAIT_S
        return max(first, 1.5 * self._slow_429)

    def _settle(self, now: float) -> None:
        """A test with no 429 within ``_test_wait()`` passed."""
        if self._probe_out is not None and now >= self._probe_out + self._test_wait():
            self._passed()

    def _wake(self) -> None:
        self._learnt.set()
        self._learnt = asyncio.Event()

    def _passed(self) -> None:
        self._wake()
        self._probe_out = None
        self._ok_age = min(self._ok_age, self._test_age)
        if self._refining and self._ok_age < self.window_s:
            self._set_window(self._ok_age)
            self.rate_per_s = self._learned_rate()

    def _prior_passed(self) -> float:
        """The age of a probe at the prior's window (a little late: a busy event loop)."""
        return (self.prior_window_s + self.prior_window_s / 300) * (1 + STEP / 3)

    def _set_window(self, window: float) -> None:
        self.window_s = window
        self.cooldown_s = window / 100
        self.margin_s = window / 300
        self.probe_after_s = 2 * window

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less when the window is learnt meanwhile (the probes' pause ends) or
        a test settles (the slots below the age it passed at are free)."""
        if not self.learn_window or (self.window_learned and not self._refining):
            await self._clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        woken = asyncio.ensure_future(self._learnt.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()

    def ready(self) -> bool:
        """Whether ``acquire()`` would grant a start right now."""
        now = self._clock.now()
        return now >= self._test_at(now)[0] - _EPS

    def _earliest(self, *, slot: bool = True) -> float:
        starts = self._starts
        slot_at = (
            starts[-self.cap] + self.window_s + self.margin_s
            if slot and self.cap and len(starts) >= self.cap
            else 0.0
        )
        return max(self._next_start, self.paused_until, slot_at, self._probe_at)

    def _next_probe(self, t: float) -> float:
        """Learning the window: the next probe after one at ``t``, when the time since the
        oldest counted start has grown by PROBE_SPAN_GROWTH (the prior's window, or the one
        learnt, is tried when a step passes it)."""
        origin = self._probe_origin
        span = max(t - origin, self.cooldown_s)
        target = span * PROBE_SPAN_GROWTH
        for known in (self.prior_window_s, self.window_s):
            known += self.margin_s
            if span < known < target:
                target = known
        return origin + target

    def _oldest_counted(self, before: list[float]) -> float:
        """Of the starts ``before`` a 429, the oldest the throttle would still count if
        its cap were the prior's (or all of them if fewer)."""
        return before[-min(self._prior_cap(), len(before))]

    def _prior_cap(self) -> int:
        return max(1, round(self.prior_per_s * self.prior_window_s))

    def _review(self, now: float) -> None:
        """Drop a provisional cap once our own log spans a window; probe upwards."""
        if self.provisional and self._first_start is not None:
            if now >= self._first_start + self.window_s + self.margin_s:
                # Learned before our log spanned a window, the cap may have counted
                # others' requests (a previous run's). Those are gone now: forget it and
                # learn it at the next 429 from a full window of our own log.
                self.cap, self.provisional = None, False
                self.rate_per_s = max(self.rate_per_s, self.prior_per_s)
        elif self.cap is not None and now - self._decreased_at >= self.probe_after_s:
            self.cap += 1
            self._decreased_at = now  # the next probe one period later

    def on_success(self, started_at: float | None = None) -> None:
        started_at = self._answered(started_at)
        if self._probe_out is not None and started_at == self._probe_out:
            self._passed()  # the test passed before its wait ended
        since = self._probing_since
        if since is not None and started_at > since:
            self._learn(since, started_at)
            return
        if started_at < self._decreased_at or not self._paced:
            return
        if self.cap is None:  # slow start: no throttle seen yet, so none may exist at all
            grown = max(self.rate_per_s * self.slow_start, self.rate_per_s + self.increase_per_s)
            if self.learn_window and self.rate_per_s >= RAMP_FROM * self.prior_per_s:
                # past the prior: a steady ramp, so the throttle, when met, is met at a
                # rate close to its own (few requests in flight beyond it)
                grown = self.rate_per_s + RAMP_STEP * self.prior_per_s
                if self._ok_age == math.inf:
                    # no faster before the throttle was found looser than the prior
                    grown = min(grown, max(self.rate_per_s, FIRST_WINDOW_PACE * self.prior_per_s))
            self.rate_per_s = min(self.max_per_s, grown)
            return
        if self._refining:
            return
        pace = self._pace() if self.window_learned else 1.05
        limit = min(self.max_per_s, pace * self.cap / self.window_s)
        self.rate_per_s = min(limit, self.rate_per_s + self.increase_per_s)

    def on_throttled(self, started_at: float | None = None) -> None:
        self.throttled += 1
        now = self._clock.now()
        started_at = self._answered(started_at)
        if self.learn_window:
            self._slow_429 = 0.5 * self._slow_429 + 0.5 * max(0.0, now - started_at)
            self._refused.append(started_at)
            if self._refused_test(started_at, now):
                return  # the others waited for the slot below which it went: no pause
        self.paused_until = max(self.paused_until, now + self.cooldown_s)
        if self.learn_window:
            if self._tentative(started_at) or self._jitter(started_at, now):
                return
            # Back off and probe; the first success tells the window and the cap (_learn).
            self._last_refused = max(self._last_refused, started_at)
            if self._probing_since is None and started_at >= self._decreased_at:
                self._probing_since = started_at
                self._probe_gap = self.cooldown_s
                # the starts of the last window before it (the log keeps a little more)
                self._snapshot = [s for s in self._starts if now - self.window_s < s < started_at]
                self._probe_origin = self._oldest_counted(self._snapshot or [started_at])
                # A first 429 after the prior's cap of starts: the window is likely longer
                # than their span, by a factor probed x1.3 at a time. After fewer starts
                # (the cap is smaller than the prior's) or once learnt (a correction):
                # probes at growing gaps from now.
                self._span_probes = (
                    not self.window_learned and len(self._snapshot) >= self._prior_cap()
                )
                if self._span_probes:
                    self.paused_until = self._clock.now()  # the probes pace it from here
                    self._probe_at = self._next_probe(started_at)
            return
        if started_at < self._decreased_at:
            return  # in flight during the last decrease: that one already covers it
        self._forget(now)
        starts = self._starts
        before = sum(1 for s in starts if started_at - self.window_s < s < started_at)
        self.cap = max(1, before if self.cap is None else min(before, self.cap - 1))
        first = started_at if self._first_start is None else self._first_start
        self.provisional = started_at - first < self.window_s
        # pace a little above the cap's average, so the cap binds and bursts are spread
        self.rate_per_s = max(self.min_per_s, min(self.max_per_s, 1.05 * self.cap / self.window_s))
        if self.provisional:
            self.rate_per_s = max(self.rate_per_s, self.prior_per_s)
        self._decreased_at = now

    def _refused_test(self, started_at: float, now: float) -> bool:
        """A test refused: the window is over its age. Refining, or after a test passed,
        the window is the smallest age seen to pass (at most STEP above it). True when
        handled so; the first test refused (the checkpoint) starts the probes."""
        if self._probe_out is None or started_at != self._probe_out:
            return False
        self._probe_out = None
        self._low_age = max(self._low_age, self._test_age)
        if self._refining:
            self._refining = False  # the window: the smallest age seen to pass
        elif self._ok_age < math.inf and not self.window_learned:
            # a feed that met the throttle late (a slow server): one refused test tells it
            self._set_window(max(self._ok_age, self._low_age))
            self.cap = self._prior_cap()
            self.window_learned = self._full_cap = True
            self._wake()
        else:
            return False
        self.rate_per_s = self._learned_rate()
        self._decreased_at = now
        return True

    def _tentative(self, started_at: float) -> bool:
        """A 429 while the window learnt is tentative (a bracket's geometric mean): the
        window is longer, bisect the bracket above it (one 429 per step, no back-off) until
        it is narrow, then take its upper end. True when handled so."""
        high = self._window_high
        if high is None or started_at < self._decreased_at or self._probing_since is not None:
            return False
        now = self._clock.now()
        if now > self._tentative_until:
            self._window_high = None
            return False  # confirmed meanwhile: a real change, learn again
        low = self.window_s
        if high > NARROW_BRACKET * low:
            self._set_window(math.sqrt(low * high))
            self._tentative_until = now + self.window_s
        else:
            self._set_window(max(low, high))
            self._window_high = None
        self.rate_per_s = self._learned_rate()
        self._decreased_at = now
        return True

    def _jitter(self, started_at: float, now: float) -> bool:
        """A 429 once the window is learnt from a full prior cap of starts, to a start at
        most 3 STEP younger than it (our send, or the server's count, was late): the window
        grows by STEP, no back-off."""
        if not self._full_cap or self._refining or started_at < self._decreased_at:
            return False
        if self.cap is not None and self.cap > self._prior_cap():
            return False  # the cap probed upwards (``_review``): that is what was refused
        age = next((a for s, a in reversed(self._ages) if s == started_at), None)
        if age is None or age > self.window_s * (1 + 3 * STEP):
            return False
        self._set_window(max(self.window_s, age) * (1 + STEP))
        self.rate_per_s = self._learned_rate()
        self._decreased_at = now
        return True

    def _pace(self) -> float:
        return LEARNED_PACE if self._full_cap else GUESSED_PACE

    def _learned_rate(self) -> float:
        assert self.cap is not None
        if self._refining:
            # the tests (one per wait) must outrun the starts a window ago
            return self.max_per_s
        pace = self._pace() * self.cap / self.window_s
        return max(self.min_per_s, min(self.max_per_s, pace))

    def _learn(self, throttled_at: float, succeeded_at: float) -> None:
        """A request started at ``succeeded_at`` succeeded after the 429 of ``throttled_at``.

        Two unknowns, the window and the cap; a sliding window shows their ratio, and the
        time it takes to let requests through again. Taking the cap as the prior's
        (``prior_per_s x window_s``, the spec's ~200) or as all we had started if fewer,
        requests succeed again once the oldest of those last cap starts leaves the window:
        window = ``succeeded_at`` - that start (between it and the last refused probe). Right
        for a burst (the issue's 20 per 10 s: all our starts, then a long wait) and for
        steady pacing (slots free one start at a time: the window is the span of the last
        cap starts, the rate ours). The first time, the window is the bracket's upper end
        (no 429 from it) and tests refine it downwards (``_refining``: one at a time, STEP
        at a time, until one is refused). Learnt again (a correction), the window only
        grows, and the rate (cap / window) drops by one start per window at least, a tenth
        at most, so it converges.
        """
        before = self._snapshot or [throttled_at]
        oldest = self._oldest_counted(before)
        # between the last refused probe and this success
        low = max(self._last_refused, throttled_at) - oldest
        high = max(succeeded_at - oldest, _EPS)
        window = high
        first = not self.window_learned
        # learnt from a full prior cap of starts (paced): the upper end, and tests refine
        # it downwards; from fewer (a burst, which tests cannot outrun): the bracket's
        # geometric mean, tentative while the bracket is wide (``_tentative``)
        tentative = first and not self._span_probes and high > NARROW_BRACKET * low
        if tentative or not first:
            window = max(math.sqrt(max(low, _EPS) * high), _EPS)
        if first:
            self._full_cap = self._span_probes
        else:
            window = max(window, self.window_s)
        cap = sum(1 for s in before if s > throttled_at - window)
        if not first and self.cap is not None:
            old_window = self.window_s
            same_rate = self.cap * window / old_window
            # lower by one start at least, a tenth at most (a stalled log is no measure)
            cap = min(math.floor(same_rate) - 1, max(cap, math.floor(0.9 * same_rate)))
        window = min(window, self.prior_window_s * PRIOR_SPREAD)
        self._set_window(window)
        self.window_learned = True
        self._probing_since = None
        self._probe_at = float("-inf")
        self._snapshot = []
        self.cap = max(1, cap)
        self.provisional = False
        self._ok_age, self._low_age = high, max(self._low_age, low)
        # (the prior's window probed and passed: the spec's is right, no 429 to refine it)
        at_prior = self.prior_window_s <= high <= self._prior_passed()
        self._refining = first and self._span_probes and not at_prior
        if tentative:
            self._window_high = min(high, self.prior_window_s * PRIOR_SPREAD)
            self._tentative_until = self._clock.now() + self._window_high
        self.rate_per_s = self._learned_rate()
        self._decreased_at = self._clock.now()
        self._wake()  # waiters slept until the next probe: go now

    def _answered(self, started_at: float | None) -> float:
        pending = self._pending
        if started_at is None:
            return pending.popleft() if pending else self._clock.now()
        if started_at in pending:
            pending.remove(started_at)
        return started_at

    def _forget(self, now: float) -> None:
        # a little more than a window: the age of a start is known up to a quarter above it
        horizon = now - 1.25 * max(self.window_s, self._window_high or 0.0)
        for log in (self._starts, self._pending, self._refused):
            while log and log[0] <= horizon:
                log.popleft()
        ages = self._ages
        while ages and ages[0][0] <= horizon:
            ages.popleft()
