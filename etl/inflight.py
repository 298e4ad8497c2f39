"""How many requests a lane keeps on the server: found by the run, not configured.

The target is Little's law, in flight = rate x latency, but both depend on the server (its
latency grows with what is in flight, spec §6) and on the budget, so the limit is searched
for, as TCP Vegas and Netflix's concurrency-limits (Vegas, Gradient2) do:

* **grow** (+1 per answer, i.e. doubling per round trip, until the server looked saturated;
  then +1 per epoch) while the lane is held back by this limit alone: a fetcher waits for a
  slot, every slot holder is on the server or waiting for budget (none for a shard or a
  page credit: the loaders are behind), and the lane's limiter could grant a request right
  now (``budget_ready``). A lane held back by its budget stops growing by itself: its
  fetchers wait on the limiter, and in flight settles at rate x latency.
* **back off** x0.75 on a 429 (once per round: not again for requests sent before it),
  and x0.9 when latency rose without throughput rising, twice running (the server is
  saturated: more in flight only queues). An epoch is ``limit`` answers; one in which the
  limit grew is compared with a reference epoch once it has 10 % more on the server (a
  lane held back by its budget sees latency rise with flat throughput too); and x0.9, no
  more growth, when an answer took longer than ``max_latency_s`` (half the request
  timeout: beyond it, requests time out and are retried).

Slots bound requests, not memory: a request waiting on the server holds no page (the page
credit is taken when its response arrives, ``pipeline``). Time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from etl.models import Clock

BACKOFF_THROTTLED = 0.75
BACKOFF_SATURATED = 0.9
MIN_ELASTICITY = 0.1  # throughput must grow at least this much per unit of ln(in flight)


class InFlight:
    def __init__(
        self,
        clock: Clock,
        *,
        initial: int,
        maximum: int,
        minimum: int = 1,
        budget_ready: Callable[[], bool] = lambda: True,
        max_latency_s: float = float("inf"),
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self._clock = clock
        self.limit, self.minimum, self.maximum = initial, minimum, maximum
        self.budget_ready = budget_ready
        self.max_latency_s = max_latency_s  # answers slower than this: saturated
        self.held = 0  # slots taken
        self.on_server = 0  # slot holders whose request is out and unanswered
        self.on_budget = 0  # slot holders waiting for the lane's limiter
        self.peak = 0  # most requests on the server at once
        self.grown = 0
        self.slow_start = True  # +1 per answer; after a back-off, +1 per epoch
        self.backed_off = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._epoch_start = clock.now()
        self._epoch_answers = 0
        self._epoch_size = max(4, initial)  # answers per epoch, fixed when it starts
        self._epoch_area = 0.0  # integral of on_server over the epoch
        self._epoch_rtt = 0.0
        self._epoch_grew = False
        self._last_change = self._epoch_start
        self._backed_off_at = float("-inf")
        self._flat = 0  # epochs in a row that grew in flight without throughput
        # the epoch compared against: (mean on the server, answers/s, mean latency)
        self._previous: tuple[float, float, float] | None = None

    # -- slots ----------------------------------------------------------------------
    async def acquire(self) -> None:
        """Wait for a slot (first come, first served). Cancellation-safe."""
        if self.held < self.limit and not self._waiters:
            self.held += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted as we were cancelled: give it back
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.held < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.held += 1
                fut.set_result(None)

    # -- what the slot holders do -------------------------------------------------------
    def waiting_budget(self, waiting: bool) -> None:
        """A slot holder starts (True) or stops (False) waiting for the lane's limiter."""
        self.on_budget += 1 if waiting else -1

    def sent(self) -> float:
        """A request left; returns its ticket (send time) for ``answered``."""
        self._account()
        self.on_server += 1
        self.peak = max(self.peak, self.on_server)
        return self._clock.now()

    def answered(self, sent_at: float, *, throttled: bool = False, ok: bool = True) -> None:
        """Its answer arrived (headers in): learn from it, maybe grow or back off."""
        self._account()
        self.on_server -= 1
        if throttled:
            if sent_at >= self._backed_off_at:  # one back-off per round of requests
                self._back_off(BACKOFF_THROTTLED)
            return
        if not ok:
            return
        self._epoch_answers += 1
        latency = self._clock.now() - sent_at
        self._epoch_rtt += latency
        if latency > self.max_latency_s:
            # the server answers near our request timeout: more in flight would only
            # queue into timeouts (and retries, each costing budget)
            if sent_at >= self._backed_off_at:  # once per round
                self._back_off(BACKOFF_SATURATED)
            return
        if (
            self._waiters
            and (self.slow_start or not self._epoch_grew)
            and self.held >= self.limit
            and self.on_server + self.on_budget >= self.limit - 1
            and self.limit < self.maximum
            and self.budget_ready()
        ):
            self.limit += 1
            self.grown += 1
            self._epoch_grew = True
            self._wake()
        if self._epoch_answers >= self._epoch_size:
            self._end_epoch()

    # -- saturation -----------------------------------------------------------------
    def _account(self) -> None:
        now = self._clock.now()
        self._epoch_area += self.on_server * (now - self._last_change)
        self._last_change = now

    def _end_epoch(self) -> None:
        now = self._clock.now()
        span = now - self._epoch_start
        if span > 0 and self._epoch_answers:
            current = (
                self._epoch_area / span,
                self._epoch_answers / span,
                self._epoch_rtt / self._epoch_answers,
            )
            ref = self._previous
            if ref is None or current[0] < ref[0] or ref[0] <= 0:
                self._previous = current
            elif current[0] > ref[0] * 1.1 and self._epoch_grew:  # only while the limit binds
                gain = math.log(max(current[1], 1e-9) / max(ref[1], 1e-9))
                more = math.log(current[0] / ref[0])
                if current[2] > ref[2] * 1.05 and gain < MIN_ELASTICITY * more:
                    self._flat += 1
                    if self._flat >= 2:  # twice running: not one noisy epoch
                        self._flat = 0
                        self._back_off(BACKOFF_SATURATED)
                else:
                    self._flat = 0
                    self._previous = current
        self._epoch_start, self._epoch_answers = now, 0
        self._epoch_size = max(4, self.limit)
        self._epoch_area = self._epoch_rtt = 0.0
        self._epoch_grew = False

    def _back_off(self, factor: float) -> None:
        new = max(self.minimum, math.floor(self.limit * factor))
        if factor == BACKOFF_SATURATED:  # a 429 speaks of the budget, not of the server
            self.slow_start = False
        self._backed_off_at = self._clock.now()
        if new < self.limit:
            self.limit = new
            self.backed_off += 1
