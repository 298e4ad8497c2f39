"""The loading side of a run: one bounded queue per loader, the page credits, and the loops
that merge a shard's queued pages into one transaction and write it.

A shard always goes to the same loader, so its checkpoints commit in page order. A page
credit is taken by a fetcher before it asks the API and given back once the page is
written: at most ``max_pages`` pages are held between fetch and commit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from etl.batching import merge
from etl.errors import StoppedInOutage
from etl.models import Batch, Destination, Reporter, RunCounters, ShardState, WriteResult

if TYPE_CHECKING:
    from etl.pipeline import PipelineOptions


class Loaders:
    def __init__(
        self,
        destination: Destination,
        options: PipelineOptions,
        counters: RunCounters,
        reporter: Reporter,
        shards: dict[str, ShardState],
    ) -> None:
        self.destination = destination
        self.options = options
        self.counters = counters
        self.reporter = reporter
        self._shards = shards  # by id: the run's view, whose counts the writes update
        self._loader_of: dict[str, int] = {}
        self.queues: list[asyncio.Queue[Batch | None]] = [
            asyncio.Queue(maxsize=options.queue_batches) for _ in range(options.loaders)
        ]
        o = options
        self.abandoned = False  # stopped during a database outage: write nothing more
        self.max_pages = o.max_pages or o.loaders * (o.queue_batches + 1) + 2
        self.credits = asyncio.Semaphore(self.max_pages)

    def assign(self, shard: ShardState) -> None:
        """Give ``shard`` a loader (round robin), for the whole run."""
        self._loader_of[shard.shard_id] = len(self._loader_of) % self.options.loaders

    async def put(self, batch: Batch) -> None:
        """Queue ``batch`` for its shard's loader (waits while that queue is full)."""
        await self.queues[self._loader_of[batch.checkpoint.shard_id]].put(batch)

    async def close(self) -> None:
        """Let every loader finish what is queued, then end."""
        for q in self.queues:
            await q.put(None)

    async def run(self, queue: asyncio.Queue[Batch | None]) -> None:
        """One loader: consecutive queued pages of one shard (up to ``batch_size`` events)
        go in one transaction."""
        ended = False
        while not ended:
            first = await queue.get()
            if first is None:
                return
            group = [first]
            size = len(first.records)
            while not queue.empty() and size < self.options.batch_size:
                nxt = queue.get_nowait()
                if nxt is None:
                    ended = True
                    break
                if nxt.checkpoint.shard_id != group[0].checkpoint.shard_id:
                    await self._write_pages(group)
                    group, size = [nxt], 0
                else:
                    group.append(nxt)
                size += len(nxt.records)
            await self._write_pages(group)

    async def _write_pages(self, group: list[Batch]) -> None:
        if not self.abandoned:
            try:
                await self._write(merge(group))
            except StoppedInOutage:
                # stopped while the database was down: what is queued is dropped (its
                # pages are fetched again by the next run), and the run ends partial
                self.abandoned = True
        for _ in group:  # one credit per page
            self.credits.release()

    async def _write(self, batch: Batch) -> None:
        result = await self.destination.write(batch)
        shard = self._shards.get(batch.checkpoint.shard_id)
        if shard is not None:
            shard.events += result.inserted
        c = self.counters  # received = inserted + duplicates + quarantined + out_of_range
        c.received += batch.received
        c.inserted += result.inserted
        # an incomplete event whose complete row is already loaded is not quarantined
        # again: it is a duplicate
        unstored = max(0, len(batch.quarantined) - result.quarantined)
        c.duplicates += result.duplicates + batch.repeats + unstored
        c.quarantined += result.quarantined
        c.out_of_range += batch.out_of_range
        if result.refreshed:
            c.extra["refreshed"] = c.extra.get("refreshed", 0) + result.refreshed
        if result.repaired or result.resolved:
            self._report_repairs(batch.checkpoint.shard_id, result)

    def _report_repairs(self, shard_id: str, result: WriteResult) -> None:
        extra = self.counters.extra
        extra["repaired"] = extra.get("repaired", 0) + result.repaired + result.resolved
        done = [
            text
            for n, text in (
                (result.repaired, f"{result.repaired} stripped row(s) in place"),
                (result.resolved, f"{result.resolved} quarantined incomplete event(s)"),
            )
            if n
        ]
        self.reporter.message(
            f"shard {shard_id}: completed {' and '.join(done)} from a complete copy"
        )
