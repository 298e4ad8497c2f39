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
        """Split the busy shard with the most left that splits at no cost, if worth it.

        Only when fewer shards remain than fetchers, and only a shard with at least
        ``split_min_pages`` pages to go (a shard split off before its first page counts
        by the density it was cut at). The cut is page-aligned (``planner.split``): the
        kept part ends with a nearly full page, and a shard whose split would cost a
        request by its density is passed over for the next.
        """
        async with self._lock:
            unfinished = [s for s in scheduler.shards if s.status != "done"]
            fetchers = self.fetchers() if callable(self.fetchers) else self.fetchers
            if scheduler.has_idle or not unfinished or len(unfinished) >= fetchers:
                return
            found = self._cut(unfinished)
            if found is None:
                return
            best, new = found
            # Persisted first, applied after: a page of ``best`` in flight meanwhile is
            # filtered by the old bound (a few events read twice, none lost).
            if not await self.store.split_shard(best, new):
                return
            best.lower_ts = new.upper_ts
            self.on_new(new)
            self.counters.extra["splits"] = self.counters.extra.get("splits", 0) + 1
            await scheduler.add(new)

    def _cut(self, unfinished: list[ShardState]) -> tuple[ShardState, ShardState] | None:
        """(the shard to split, its new part): the one with the most left of those whose
        split costs no request by their density; failing that, the one with the most left
        (a fetcher holding budget and no shard loses that budget while it waits)."""
        page = self.options.page_size
        left = {s.shard_id: planner.remaining_events(s) or 0.0 for s in unfinished}
        worth = sorted(
            (s for s in unfinished if left[s.shard_id] >= self.options.split_min_pages * page),
            key=lambda s: left[s.shard_id],
            reverse=True,
        )
        for free in (True, False):
            for shard in worth:
                new = planner.split(shard, page_size=page, free=free)
                if new is not None:
                    return shard, new
        return None
