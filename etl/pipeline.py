"""The run: fetchers -> transform -> per-loader bounded queues -> destination, in one TaskGroup.

The run takes the source's ``Stream`` as data (its transform, key and split kind) and
never names a source. Every lane of the source gets fetchers up to its in-flight limit,
which the run finds by itself (``etl.inflight``; ``lane.concurrency`` is where it starts);
what one fetcher does is ``etl.fetching``. A shard always goes to the same loader, so its
checkpoints commit in page order: a crash can never leave a later page committed before an
earlier one.

Stopping (signal, ``--max-runtime``, or a fatal source error) is graceful: fetchers stop
and abandon requests in flight, loaders commit what is queued, and the run ends partial.
Imports no aiohttp, asyncpg or rich: the parts arrive as Protocols.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from etl import identity as ident
from etl import planner
from etl.aio import first_error
from etl.errors import EtlError
from etl.fetching import Fetching
from etl.guard import DatasetGuard
from etl.heartbeat import tick
from etl.inflight import InFlight
from etl.loading import Loaders
from etl.models import (
    Clock,
    Destination,
    FinalStatus,
    Lane,
    Reporter,
    RunCounters,
    ShardState,
    Source,
    StateStore,
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
    # pages left (the one in flight included) for a shard to be split: over one, its last
    # page goes in flight beside the others, not after (splits are page-aligned: no page lost)
    split_min_pages: float = 1.25
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
        self.stop_reason = ""
        self.shards: list[ShardState] = []
        self._by_id: dict[str, ShardState] = {}
        self._slots: dict[str, InFlight] = {}
        self._loading = Loaders(destination, options, self.counters, reporter, self._by_id)
        self._splitter = Splitter(store, options, self.counters, fetchers=0, on_new=self._adopt)
        self._finished = asyncio.Event()
        self.stream = source.stream
        self._fetching: Fetching = Fetching(
            self.stream,
            options,
            self.counters,
            reporter,
            self._loading,
            self._splitter,
            stop=self.stop,
            request_stop=self.request_stop,
            overwrite=lambda: self._guard.overwrite,
        )
        self._halt = self._fetching.halt  # stop requested, or nothing left to fetch
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
        self._fetching.lane_names = [lane.name for lane in lanes]
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
        self.counters.extra["peak_awaiting_credit"] = self._fetching.waiting.peak

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
                        fetchers.create_task(self._fetching.fetcher(lane, scheduler, slots))
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

    @property
    def error(self) -> EtlError | None:
        """The run's first fatal error (None: none)."""
        return self._fetching.error

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
