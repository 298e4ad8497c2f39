"""Hands out shards to fetchers: each shard has at most one page in flight, in order."""

from __future__ import annotations

import asyncio
from collections import deque

from etl.models import ShardState


class ShardScheduler:
    def __init__(self, shards: list[ShardState]) -> None:
        self.shards = shards
        self._idle: deque[ShardState] = deque(s for s in shards if s.status != "done")
        self._busy = 0
        self.waiting = 0  # fetchers waiting in ``take`` for a shard to be released or added
        self._changed = asyncio.Condition()
        self.drained = asyncio.Event()  # every shard done: waiting fetchers can go home
        if not self._idle:
            self.drained.set()

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    async def take(self) -> ShardState | None:
        """An idle unfinished shard; None once every shard is done."""
        async with self._changed:
            while True:
                if self._idle:
                    self._busy += 1
                    return self._idle.popleft()
                if self._busy == 0:
                    return None
                self.waiting += 1
                try:
                    await self._changed.wait()
                finally:
                    self.waiting -= 1

    async def release(self, shard: ShardState) -> None:
        """The fetcher is finished with ``shard`` for now (``shard.status`` says if it is done)."""
        async with self._changed:
            self._busy -= 1
            if shard.status != "done":
                self._idle.append(shard)
            elif self._busy == 0 and not self._idle:
                self.drained.set()
            self._changed.notify_all()

    async def add(self, shard: ShardState) -> None:
        async with self._changed:
            self.shards.append(shard)
            self._idle.append(shard)
            self.drained.clear()
            self._changed.notify_all()
