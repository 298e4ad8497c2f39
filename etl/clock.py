"""Clocks satisfying ``etl.models.Clock``: the real one and a virtual one for tests.

``FakeClock`` semantics (like trio's autojump clock, or aiolimiter's ``MockLoopTime``):

* ``now()`` is virtual seconds, starting at ``start``; it changes only through ``advance`` or a
  jump, never on its own, and never goes backwards.
* ``await sleep(s)`` registers a deadline ``now() + s`` and waits. With ``autojump=True`` (the
  default), as soon as the event loop has nothing else ready to run, time jumps to the
  earliest pending deadline and that one sleeper (ties: first come, first served) is woken;
  the check then repeats, so whatever the woken task does (including sleeping again with an
  earlier deadline than the other sleepers) happens before time moves on. Concurrent sleepers
  thus wake in deadline order, and a test of minutes of virtual time runs in milliseconds.
* With ``autojump=False``, time moves only through ``advance(s)``, which wakes every sleeper
  whose deadline has passed, in deadline order. Use it to assert what is still waiting.
* A cancelled sleep leaves no trace.

The idle check peeks at the loop's ready queue (``loop._ready``, CPython's asyncio); on a
loop without one it falls back to letting the loop spin a fixed number of times.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

_SPINS_WITHOUT_READY_QUEUE = 50


class MonotonicClock:
    """Real time: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time for tests; see the module docstring for the exact semantics."""

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = start
        self.autojump = autojump
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._jump_scheduled = False

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper that is due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), fut))
        if self.autojump and not self._jump_scheduled:
            self._jump_scheduled = True
            loop.call_soon(self._maybe_jump, loop, _SPINS_WITHOUT_READY_QUEUE)
        await fut

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def _maybe_jump(self, loop: asyncio.AbstractEventLoop, spins: int) -> None:
        ready = getattr(loop, "_ready", None)
        busy = len(ready) > 0 if ready is not None else spins > 0
        if busy:
            loop.call_soon(self._maybe_jump, loop, spins - 1)
            return
        while self._sleepers:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():  # cancelled
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            loop.call_soon(self._maybe_jump, loop, _SPINS_WITHOUT_READY_QUEUE)
            return
        self._jump_scheduled = False
