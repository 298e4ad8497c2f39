"""The fetch side of a run: each fetcher takes a slot, its lane's budget and an idle shard,
fetches the shard's next page (taking a page credit only when the response arrives),
turns it into a batch through the stream's transform and queues it for the shard's loader.

A throttled request gives its shard back at once, for a lane that has budget. A page that
never decodes is isolated (``etl.isolation``); a page with incomplete records is re-read
for complete copies. A failing lane is retired while another can carry on; otherwise the
first error stops the run. Imports no aiohttp, asyncpg or rich, and nothing of a source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from etl.aio import until_stopped
from etl.batching import advance, fill_incomplete, transform_for
from etl.credits import Credit, Waiting
from etl.errors import AuthError, BrokenPage, EtlError, RateLimited, SourceError
from etl.inflight import InFlight
from etl.isolation import Isolation
from etl.loading import Loaders
from etl.models import Lane, Page, Reporter, RunCounters, ShardState, Stream, TransformResult
from etl.scheduler import ShardScheduler
from etl.splitting import Splitter

if TYPE_CHECKING:
    from etl.pipeline import PipelineOptions


class Fetching:
    """The fetchers of one run and what they share: the stop and halt events, the lanes
    retired, the run's first error."""

    def __init__(
        self,
        stream: Stream,
        options: PipelineOptions,
        counters: RunCounters,
        reporter: Reporter,
        loading: Loaders,
        splitter: Splitter,
        *,
        stop: asyncio.Event,
        request_stop: Callable[[str], None],
        overwrite: Callable[[], bool],
    ) -> None:
        """``overwrite``: whether batches replace loaded rows that differ (a re-sync)."""
        self.stream = stream
        self.options = options
        self.counters = counters
        self.reporter = reporter
        self.loading = loading
        self.splitter = splitter
        self.isolation = Isolation(stream, options.page_size, counters)
        self.stop = stop
        self.halt = asyncio.Event()  # stop requested, or nothing left to fetch
        self.request_stop = request_stop
        self.overwrite = overwrite
        self.error: EtlError | None = None
        self.retired: set[str] = set()
        # half the page credits' worth of responses may wait for one (``etl.credits``)
        self.waiting = Waiting(loading.max_pages // 2)
        self.lane_names: list[str] = []

    def fail(self, exc: EtlError, reason: str) -> None:
        """The run stops; the first error is the run's."""
        if self.error is None:
            self.error = exc
        self.request_stop(reason)

    def _retire(self, lane: Lane, exc: EtlError) -> bool:
        """Take a failing lane out of the run if another can carry on (not for a bad key)."""
        if isinstance(exc, AuthError) or not isinstance(exc, SourceError):
            return False
        alive = [n for n in self.lane_names if n not in self.retired]
        if lane.name not in alive or len(alive) < 2:
            return lane.name in self.retired  # already retired by a sibling fetcher
        self.retired.add(lane.name)
        self.counters.extra["lanes_retired"] = len(self.retired)
        self.reporter.message(f"the {lane.name} lane failed ({exc}); carrying on without it")
        return True

    async def fetcher(self, lane: Lane, scheduler: ShardScheduler, slots: InFlight) -> None:
        while not self.halt.is_set() and lane.name not in self.retired:
            # A slot first: the lane's in-flight limit, found as the run goes (etl.inflight).
            # No page credit yet: a request waiting on the server holds no page; the credit
            # is taken when its response arrives (``etl.credits``), so memory stays bounded
            # without capping what is in flight.
            ok, _ = await until_stopped(slots.acquire(), self.halt)
            if not ok:
                return
            try:
                go_on = await self._fetch_one(lane, scheduler, slots)
            finally:
                slots.release()
            if not go_on:
                return

    async def _fetch_one(self, lane: Lane, scheduler: ShardScheduler, slots: InFlight) -> bool:
        """One page of one shard into its loader's queue: False when the fetcher should stop."""
        if not self.waiting.room.is_set():  # the loaders are behind: send nothing more
            ok, _ = await until_stopped(self.waiting.room.wait(), self.halt)
            if not ok:
                return False
        slots.waiting_budget(True)
        try:
            ok, ticket = await until_stopped(lane.acquire(), self.halt)
        finally:
            slots.waiting_budget(False)
        if not ok:
            return False
        splitting = self.options.split and self.stream.split == "time_range"
        if splitting and not scheduler.has_idle:
            await self.splitter.steal(scheduler)
        shard = await scheduler.take()
        if shard is None:
            return False
        if splitting and scheduler.waiting and not scheduler.has_idle:
            # Others wait for a shard with their budget in hand (the run's tail): cut one
            # for them now, rather than leave them waiting until a page lands, then run the
            # shard's last pages one after the other.
            await self.splitter.steal(scheduler)
        credit = Credit(self.loading.credits, self.waiting)
        limit = self.isolation.limit(shard)
        try:
            try:
                go_on, page = await self._request(lane, shard, limit, slots, credit, ticket)
            except BrokenPage as exc:
                go_on, queued = await self._broken(shard, scheduler, limit, exc)
                if queued:  # the quarantined record's batch: one page's credit
                    await credit.take()
                    credit.handed = True
                return go_on
            if page is None:
                await scheduler.release(shard)
                return go_on
            self.isolation.read(shard, limit)
            await credit.take()  # normally taken already, when the response arrived
            await self._queue(lane, shard, page)
            credit.handed = True  # its credit goes back when it is written (``Loaders``)
            await scheduler.release(shard)
            return True
        finally:
            credit.give_back()

    async def _request(
        self,
        lane: Lane,
        shard: ShardState,
        limit: int,
        slots: InFlight,
        credit: Credit,
        ticket: float | None,
    ) -> tuple[bool, Page | None]:
        """(carry on, the next page of ``shard``): no page when throttled (the shard goes
        back, for a lane with budget: carry on), stopped, or failed."""
        sent_at: float | None = slots.sent()

        async def arrived() -> None:  # the response's headers are in; its body is next
            nonlocal sent_at
            if sent_at is not None:
                slots.answered(sent_at)
                sent_at = None
            await credit.take()

        fetch = lane.fetch(shard, limit, gate=arrived, yield_throttled=True, ticket=ticket)
        try:
            ok, page = await until_stopped(fetch, self.stop)
        except RateLimited:  # the lane's limiter has learnt from it
            if sent_at is not None:
                slots.answered(sent_at, throttled=True)
                sent_at = None
            return True, None
        except BrokenPage:
            raise  # the caller isolates it (etl.isolation)
        except EtlError as exc:
            if not self._retire(lane, exc):
                self.fail(exc, str(exc))
            return False, None
        finally:
            if sent_at is not None:
                slots.answered(sent_at, ok=False)
        return ok and page is not None, page

    async def _queue(self, lane: Lane, shard: ShardState, page: Page) -> None:
        """Transform ``page`` (re-reading it for incomplete events) and queue its batch."""
        self.counters.pages += 1
        result = transform_for(self.stream, shard, page, self.options.max_event_chars)
        if result.incomplete:
            await self._reread(lane, shard, result)
        batch = advance(self.stream, shard, page, result)
        if self.overwrite():
            batch = replace(batch, overwrite=True)
        # The put may wait (backpressure): hold only the rows meanwhile, not the decoded
        # page (its raw JSON values keep the whole response body alive). The shard stays
        # ours until its batch is queued.
        del page
        await self.loading.put(batch)

    async def _broken(
        self, shard: ShardState, scheduler: ShardScheduler, limit: int, exc: BrokenPage
    ) -> tuple[bool, bool]:
        """A page that never decodes does not block its shard (``etl.isolation``): asked
        again in pages half the size; at one record, its bytes go to quarantine and the shard
        goes on past it."""
        sid = shard.shard_id
        smaller = self.isolation.broken(shard, limit)
        if smaller is not None:
            self.reporter.message(
                f"shard {sid}: {exc}; asking that range again in pages of {smaller}"
            )
            await scheduler.release(shard)
            return True, False
        batch = self.isolation.step_over(shard, exc)
        if batch is None:  # not even its position can be read: nothing to step over
            await scheduler.release(shard)
            self.fail(exc, f"shard {sid}: an unreadable record whose position is unknown")
            return False, False
        self.reporter.message(
            f"shard {sid}: quarantined the raw bytes of an unreadable record and went on past it"
        )
        await self.loading.put(batch)
        await scheduler.release(shard)
        return True, True

    async def _reread(self, lane: Lane, shard: ShardState, result: TransformResult) -> None:
        """Ask the page again (same shard position) for complete copies of its incomplete
        events; what stays incomplete is quarantined by ``advance``. A failed re-read is not
        the run's failure: the first read stands."""
        extra = self.counters.extra
        for _ in range(self.options.rereads):
            ok, ticket = await until_stopped(lane.acquire(), self.halt)
            if not ok:
                break
            extra["rereads"] = extra.get("rereads", 0) + 1
            try:
                ok, again = await until_stopped(
                    lane.fetch(shard, self.isolation.limit(shard), ticket=ticket), self.stop
                )
            except EtlError:
                break
            if not ok or again is None:
                break
            again_result = transform_for(self.stream, shard, again, self.options.max_event_chars)
            filled = fill_incomplete(self.stream, result, again_result)
            extra["incomplete_reread"] = extra.get("incomplete_reread", 0) + filled
            if not result.incomplete:
                return
        fields = sorted({f for q in result.incomplete for f in q.missing})
        extra["incomplete_quarantined"] = extra.get("incomplete_quarantined", 0) + len(
            result.incomplete
        )
        self.reporter.message(
            f"shard {shard.shard_id}: {len(result.incomplete)} event(s) still lack "
            f"{', '.join(fields)} after re-reading the page; quarantined until a complete "
            "copy arrives"
        )
