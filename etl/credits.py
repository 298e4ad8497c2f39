"""Page credits: a page is held between its response's arrival and its commit only with
a credit (``Credit``), and the responses waiting for one are counted (``Waiting``), so the
run's memory is bounded without capping the requests on the server."""

from __future__ import annotations

import asyncio


class Waiting:
    """Responses whose headers are in, waiting for a page credit (the loaders are behind).

    Each keeps its connection's read buffers: past ``cap`` of them, no new request is sent
    (``room``) until the loaders catch up, so memory stays flat however many requests the
    lanes keep in flight.
    """

    __slots__ = ("cap", "count", "peak", "room")

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self.count = self.peak = 0
        self.room = asyncio.Event()
        self.room.set()

    def add(self, n: int) -> None:
        self.count += n
        self.peak = max(self.peak, self.count)
        if self.count >= self.cap:
            self.room.clear()
        else:
            self.room.set()


class Credit:
    """At most one page credit, taken once (when a response arrives) and given back once,
    unless handed to the loaders with its page."""

    __slots__ = ("_credits", "_waiting", "handed", "held")

    def __init__(self, credits: asyncio.Semaphore, waiting: Waiting) -> None:
        self._credits = credits
        self._waiting = waiting
        self.held = False
        self.handed = False

    async def take(self) -> None:
        if not self.held:
            if self._credits.locked():
                self._waiting.add(1)
                try:
                    await self._credits.acquire()
                finally:
                    self._waiting.add(-1)
            else:
                await self._credits.acquire()
            self.held = True

    def give_back(self) -> None:
        if self.held and not self.handed:
            self.held = False
            self._credits.release()
