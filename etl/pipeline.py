"""The run: fetchers -> transform -> per-loader bounded queues -> destination, in one TaskGroup.

Every lane of the source gets fetchers up to its in-flight limit, which the run finds by
itself (``etl.inflight``; ``lane.concurrency`` is where it starts). A fetcher waits for a
slot and its lane's budget, takes an idle shard, fetches its next page (taking a page credit
only when the response arrives), transforms it and queues the batch for the shard's loader.
A throttled request gives its shard back at once, for a lane that has budget. A shard
always goes to the same loader, so its checkpoints commit in page order: a crash can never
leave a later page committed before an earlier one.

Stopping (signal, ``--max-runtime``, or a fatal source error) is graceful: fetchers stop
and abandon requests in flight, loaders commit what is queued, and the run ends partial.
Imports no aiohttp, asyncpg or rich: the parts arrive as Protocols.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from etl import identity as ident
from etl import planner
from etl.aio import first_error, until_stopped
from etl.batching import advance, fill_incomplete, transform_for
from etl.errors import AuthError, BrokenPage, EtlError, RateLimited, SourceError
from etl.guard import DatasetGuard
from etl.heartbeat import tick
from etl.inflight import InFlight
from etl.isolation import Isolation
from etl.loading import Loaders
from etl.models import (
    Clock,
    Destination,
    FinalStatus,
    Lane,
    Page,
    Reporter,
    RunCounters,
    ShardState,
    Source,
    StateStore,
    TransformResult,
)
from etl.planning import plan_run
from etl.scheduler import ShardScheduler
from etl.settings import DEFAULTS
from etl.splitting import Splitter
from etl.tasks import TaskShare


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """How a run is cut and paced. The knobs a user sets default to ``etl.settings``;
    ``etl.wiring.pipeline_options`` builds them from a ``Settings``."""

    page_size: int = DEFAULTS.page_size
    shards: int = DEFAULTS.shards
    span_ms: int = int(DEFAULTS.span_days * planner.DAY_MS)
    overlap_ms: int = DEFAULTS.overlap_ms
    loaders: int = DEFAULTS.loaders
    queue_batches: int = DEFAULTS.queue_batches  # per loader: bounds memory (backpressure)
    max_pages: int = 0  # fetched, not yet written; 0: loaders * (queue_batches + 1) + 2
    batch_size: int = DEFAULTS.batch_size  # events per transaction at most (pages merged)
    tick_s: float = 0.5
    heartbeat_s: float = 5.0
    max_runtime_s: float | None = DEFAULTS.max_runtime_s
    split: bool = True  # split busy shards when fetchers run out of idle ones
    split_min_pages: int = 4
    max_event_chars: int = int(DEFAULTS.max_event_kb * 1024)  # larger events: quarantined
    rereads: int = DEFAULTS.incomplete_rereads  # re-reads of a page with incomplete events
    full_refresh: bool = DEFAULTS.full_refresh  # retire every shard first, re-read all
    max_in_flight: int = DEFAULTS.max_in_flight  # per lane: the adaptive limit's ceiling
    # answers slower than this stop a lane's growth: half the request timeout
    max_latency_s: float = DEFAULTS.request_timeout_s / 2
    share: TaskShare | None = None  # task mode: load only this share of the plan (etl.tasks)


@dataclass(slots=True)
class Outcome:
    status: FinalStatus
    counters: RunCounters
    shards: list[ShardState]
    reason: str = ""
    error: EtlError | None = None
    planned: str = ""
    loaded_total: int = 0
    expected_total: int | None = None


class _Credit:
    """At most one page credit, taken once (when a response arrives) and given back once,
    unless handed to the loaders with its page."""

    __slots__ = ("_credits", "handed", "held")

    def __init__(self, credits: asyncio.Semaphore) -> None:
        self._credits = credits
        self.held = False
        self.handed = False

    async def take(self) -> None:
        if not self.held:
            await self._credits.acquire()
            self.held = True

    def give_back(self) -> None:
        if self.held and not self.handed:
            self.held = False
            self._credits.release()


class Run:
    def __init__(
        self,
        source: Source,
        destination: Destination,
        store: StateStore,
        reporter: Reporter,
        clock: Clock,
        options: PipelineOptions,
        *,
        counters: RunCounters | None = None,
        stop: asyncio.Event | None = None,
        identity: ident.SourceIdentity | None = None,
    ) -> None:
        """``identity``: who the source is (api, key id); None skips the dataset checks."""
        self.source = source
        self._guard = DatasetGuard(
            source, store, reporter, identity, full_refresh=options.full_refresh
        )
        self.destination = destination
        self.store = store
        self.reporter = reporter
        self.clock = clock
        self.options = options
        self.counters = counters or RunCounters()
        self.stop = stop or asyncio.Event()
        self._halt = asyncio.Event()  # stop requested, or nothing left to fetch
        self.stop_reason = ""
        self.error: EtlError | None = None
        self.shards: list[ShardState] = []
        self._by_id: dict[str, ShardState] = {}
        self._retired: set[str] = set()
        self._lane_names: list[str] = []
        self._slots: dict[str, InFlight] = {}
        self._loading = Loaders(destination, options, self.counters, reporter, self._by_id)
        self._splitter = Splitter(store, options, self.counters, fetchers=0, on_new=self._adopt)
        self._finished = asyncio.Event()
        self.stream = source.stream
        self._isolation = Isolation(self.stream, options.page_size, self.counters)
        self._planned = True  # False: stopped before the plan was made

    async def plan(self) -> tuple[str, int | None]:
        """Decide the shards of this run (see ``etl.planning``); tasks plan one at a time."""
        async with self.store.planning():
            plan = await plan_run(
                self.source, self.store, self.options, self.stop, same_dataset=self._guard.check
            )
        self.shards = plan.shards
        self._planned = plan.made
        share = self.options.share
        if share is None:
            return plan.how, plan.total
        mine = [s for s in plan.shards if s.status != "done" and share.owns(s.shard_id)]
        return f"{plan.how}; {share.label}: {len(mine)} unfinished shard(s) are its share", (
            plan.total
        )

    def _todo(self) -> list[ShardState]:
        """The unfinished shards this run loads: all, or its task's share."""
        share = self.options.share
        return [
            s
            for s in self.shards
            if s.status != "done" and (share is None or share.owns(s.shard_id))
        ]

    def _adopt(self, shard: ShardState) -> None:
        """A shard split off a busy one joins the run."""
        self._by_id[shard.shard_id] = shard
        self._loading.assign(shard)
        self.shards.append(shard)

    # -- the run ----------------------------------------------------------------------
    async def execute(self) -> Outcome:
        planned, total = await self.plan()
        loaded_before = (await self.store.tally()).events
        todo = self._todo()
        self._by_id.update((s.shard_id, s) for s in self.shards)
        for shard in todo:
            self._loading.assign(shard)
        lanes = self.source.lanes()
        opts = self.options
        self._slots = {
            lane.name: InFlight(
                self.clock,
                initial=max(1, min(lane.concurrency, opts.max_in_flight)),
                maximum=max(1, opts.max_in_flight),
                budget_ready=lane.budget_ready,
                max_latency_s=opts.max_latency_s,
            )
            for lane in lanes
        }
        self._splitter.fetchers = self._fetchers
        self._lane_names = [lane.name for lane in lanes]
        scheduler = ShardScheduler(todo)
        self._halt.clear()
        if self.stop.is_set():
            self._halt.set()
        self.counters.extra["expected_total"] = total or 0
        self.counters.extra["loaded_before"] = loaded_before
        self.reporter.message(planned)
        try:
            await self._run_tasks(lanes, scheduler)
        except* EtlError as group:
            raise first_error(group) from None
        self._note_in_flight()
        self.reporter.update(self.counters, self.shards)
        return await self._outcome(planned, total, loaded_before)

    def _fetchers(self) -> int:
        """Requests the lanes may have in flight now (the splitter's yardstick)."""
        return sum(slots.limit for slots in self._slots.values())

    def _note_in_flight(self) -> None:
        """Per lane: the most requests on the server at once, and the limit found."""
        for name, slots in self._slots.items():
            self.counters.extra[f"peak_in_flight_{name}"] = slots.peak
            self.counters.extra[f"in_flight_limit_{name}"] = slots.limit

    async def _run_tasks(self, lanes: list[Lane], scheduler: ShardScheduler) -> None:
        """Fetchers, loaders, the heartbeat and the halt watch, in one TaskGroup: the
        loaders drain what is queued once every fetcher has ended."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                tick(
                    clock=self.clock,
                    options=self.options,
                    store=self.store,
                    reporter=self.reporter,
                    counters=self.counters,
                    shards=self.shards,
                    finished=self._finished,
                    request_stop=self.request_stop,
                )
            )
            loaders = [tg.create_task(self._loading.run(q)) for q in self._loading.queues]
            tg.create_task(self._halt_when(scheduler))
            async with asyncio.TaskGroup() as fetchers:
                for lane in lanes:
                    slots = self._slots[lane.name]
                    for _ in range(slots.maximum):
                        fetchers.create_task(self._fetcher(lane, scheduler, slots))
            await self._loading.close()
            await asyncio.gather(*loaders)
            self._finished.set()

    async def _outcome(self, planned: str, total: int | None, loaded_before: int) -> Outcome:
        complete = not self._todo() and self.error is None and self._planned
        status: FinalStatus = "succeeded" if complete else "partial"
        if self.error is not None:
            status = "failed"
        elif status == "succeeded":
            status, self.stop_reason = await self._guard.judge_run(
                self.shards, total, self.counters, self.options.share
            )
        return Outcome(
            status=status,
            counters=self.counters,
            shards=self.shards,
            reason=self.stop_reason,
            error=self.error,
            planned=planned,
            loaded_total=loaded_before + self.counters.inserted,
            expected_total=total,
        )

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()
        self._halt.set()

    async def _halt_when(self, scheduler: ShardScheduler) -> None:
        """Release fetchers waiting for budget once no shard is left (or a stop came)."""
        done = asyncio.ensure_future(scheduler.drained.wait())
        stopped = asyncio.ensure_future(self.stop.wait())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({done, stopped, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (done, stopped, finished):
                f.cancel()
        self._halt.set()

    def _retire(self, lane: Lane, exc: EtlError) -> bool:
        """Take a failing lane out of the run if another can carry on (not for a bad key)."""
        if isinstance(exc, AuthError) or not isinstance(exc, SourceError):
            return False
        alive = [n for n in self._lane_names if n not in self._retired]
        if lane.name not in alive or len(alive) < 2:
            return lane.name in self._retired  # already retired by a sibling fetcher
        self._retired.add(lane.name)
        self.counters.extra["lanes_retired"] = len(self._retired)
        self.reporter.message(f"the {lane.name} lane failed ({exc}); carrying on without it")
        return True

    async def _fetcher(self, lane: Lane, scheduler: ShardScheduler, slots: InFlight) -> None:
        while not self._halt.is_set() and lane.name not in self._retired:
            # A slot first: the lane's in-flight limit, found as the run goes (etl.inflight).
            # No page credit yet: a request waiting on the server holds no page; the credit
            # is taken when its response arrives (``_Credit``), so memory stays bounded
            # without capping what is in flight.
            ok, _ = await until_stopped(slots.acquire(), self._halt)
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
        slots.waiting_budget(True)
        try:
            ok, ticket = await until_stopped(lane.acquire(), self._halt)
        finally:
            slots.waiting_budget(False)
        if not ok:
            return False
        if self.options.split and not scheduler.has_idle:
            await self._splitter.steal(scheduler)
        shard = await scheduler.take()
        if shard is None:
            return False
        credit = _Credit(self._loading.credits)
        limit = self._isolation.limit(shard)
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
            self._isolation.read(shard, limit)
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
        credit: _Credit,
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
                if self.error is None:
                    self.error = exc
                self.request_stop(str(exc))
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
        if self._guard.overwrite:
            batch = replace(batch, overwrite=True)
        # The put may wait (backpressure): hold only the rows meanwhile, not the decoded
        # page (its raw JSON values keep the whole response body alive). The shard stays
        # ours until its batch is queued.
        del page
        await self._loading.put(batch)

    async def _broken(
        self, shard: ShardState, scheduler: ShardScheduler, limit: int, exc: BrokenPage
    ) -> tuple[bool, bool]:
        """A page that never decodes does not block its shard (``etl.isolation``): asked
        again in pages half the size; at one record, its bytes go to quarantine and the shard
        goes on past it."""
        sid = shard.shard_id
        smaller = self._isolation.broken(shard, limit)
        if smaller is not None:
            self.reporter.message(
                f"shard {sid}: {exc}; asking that range again in pages of {smaller}"
            )
            await scheduler.release(shard)
            return True, False
        batch = self._isolation.step_over(shard, exc)
        if batch is None:  # not even its position can be read: nothing to step over
            await scheduler.release(shard)
            if self.error is None:
                self.error = exc
            self.request_stop(f"shard {sid}: an unreadable record whose position is unknown")
            return False, False
        self.reporter.message(
            f"shard {sid}: quarantined the raw bytes of an unreadable record and went on past it"
        )
        await self._loading.put(batch)
        await scheduler.release(shard)
        return True, True

    async def _reread(self, lane: Lane, shard: ShardState, result: TransformResult) -> None:
        """Ask the page again (same shard position) for complete copies of its incomplete
        events; what stays incomplete is quarantined by ``advance``. A failed re-read is not
        the run's failure: the first read stands."""
        extra = self.counters.extra
        for _ in range(self.options.rereads):
            ok, ticket = await until_stopped(lane.acquire(), self._halt)
            if not ok:
                break
            extra["rereads"] = extra.get("rereads", 0) + 1
            try:
                ok, again = await until_stopped(
                    lane.fetch(shard, self._isolation.limit(shard), ticket=ticket), self.stop
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
