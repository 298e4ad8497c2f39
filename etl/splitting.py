"""Work stealing: when a fetcher finds no idle shard, the busy shard with the most left is
split, so fetchers never idle behind one long shard at the end of a run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from etl import planner
from etl.models import RunCounters, ShardState, StateStore
from etl.scheduler import ShardScheduler

if TYPE_CHECKING:
    from etl.pipeline import PipelineOptions


class Splitter:
    def __init__(
        self,
        store: StateStore,
        options: PipelineOptions,
        counters: RunCounters,
        *,
        fetchers: int | Callable[[], int],
        on_new: Callable[[ShardState], None],
    ) -> None:
        self.store = store
        self.options = options
        self.counters = counters
        self.fetchers = fetchers  # or how many there are now (in flight is adaptive)
        self.on_new = on_new  # the run adopts the new shard (its loader, its view)
        self._lock = asyncio.Lock()

    async def steal(self, scheduler: ShardScheduler) -> None:
        """Split the busy shard with the most left, if worth it.

        Only when fewer shards remain than fetchers, and only a shard with at least
        ``split_min_pages`` pages to go (each split costs a request or two).
        """
        async with self._lock:
            unfinished = [s for s in scheduler.shards if s.status != "done"]
            fetchers = self.fetchers() if callable(self.fetchers) else self.fetchers
            if scheduler.has_idle or not unfinished or len(unfinished) >= fetchers:
                return
            best = max(unfinished, key=lambda s: planner.remaining_events(s) or 0.0)
            left = planner.remaining_events(best)
            if left is None or left < self.options.split_min_pages * self.options.page_size:
                return
            new = planner.split(best, page_size=self.options.page_size)
            if new is None:
                return
            # Persisted first, applied after: a page of ``best`` in flight meanwhile is
            # filtered by the old bound (a few events read twice, none lost).
            if not await self.store.split_shard(best, new):
                return
            best.lower_ts = new.upper_ts
            self.on_new(new)
            self.counters.extra["splits"] = self.counters.extra.get("splits", 0) + 1
            await scheduler.add(new)
