"""What a run fetches: the unfinished shards of the last run, else a full or incremental plan,
plus re-reads of the ranges that hold incomplete events. A stream that is one cursor chain
(``Stream.split`` not time_range) has one shard, named after the stream: resumed at its
next page, or started again (from its mark, for an incremental one). Talks to the
Protocols only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from etl import planner
from etl.aio import until_stopped
from etl.models import Position, ShardState, Source, StateStore

if TYPE_CHECKING:
    from etl.pipeline import PipelineOptions


# (stored shards, head, total) -> the shards to go on with; raises if the state is another's
SameDataset = Callable[[list[ShardState], Position | None, int | None], Awaitable[list[ShardState]]]


@dataclass(frozen=True, slots=True)
class Plan:
    shards: list[ShardState]  # every shard of the sync, done ones included
    how: str  # one line for the reporter
    total: int | None  # what the API reports it holds
    made: bool = True  # False: stopped before the plan could be made


async def plan_run(
    source: Source,
    store: StateStore,
    options: PipelineOptions,
    stop: asyncio.Event,
    *,
    same_dataset: SameDataset | None = None,
) -> Plan:
    """Resume what is unfinished; otherwise plan new shards (recorded in ``store``).
    ``same_dataset`` vets the stored state against the source first (and may retire it)."""
    shards = await store.load_shards()
    if source.stream.split != "time_range":
        return await _plan_chain(source.stream.name, shards, store)
    # the head probe retries an unreachable API with back-off: a stop ends it at once
    ok, found = await until_stopped(source.head(), stop)
    if not ok or found is None:
        return Plan(shards, "stopped before planning", None, made=False)
    head, total = found
    if same_dataset is not None:
        shards = await same_dataset(shards, head, total)
    unfinished = sum(1 for s in shards if s.status != "done")
    if unfinished:
        return Plan(shards, f"resuming {unfinished} unfinished shard(s)", total)
    if head is None:
        return Plan(shards, "the API has no events", total)
    new, how = _new_shards(shards, head, options)
    repairs = planner.repair_plan(await store.repair_targets(), shards)
    if repairs:
        how += f"; re-reading {len(repairs)} range(s) to complete incomplete events"
        new = new + repairs
    if new:
        await store.add_shards(new)
    return Plan(shards + new, how, total)


async def _plan_chain(name: str, shards: list[ShardState], store: StateStore) -> Plan:
    """Go on with the chain's unfinished shard, else start it again (the store keeps the
    stream's mark: an incremental stream asks only for what changed since)."""
    if any(s.status != "done" for s in shards):
        return Plan(shards, f"{name}: resuming at its next page", None)
    new = [ShardState(name, lower_ts=None, upper_ts=None)]
    await store.add_shards(new)
    return Plan(new, f"{name}: reading from the first page", None)


def _new_shards(
    shards: list[ShardState], head: Position, options: PipelineOptions
) -> tuple[list[ShardState], str]:
    """A full sync when nothing is covered yet, else the time above the last sync."""
    covered = planner.covered_upper(shards)
    if covered is None:
        new = planner.full_plan(head, shards=options.shards, span_ms=options.span_ms)
        return new, f"full sync in {len(new)} shards"
    new = planner.incremental_plan(
        covered,
        head,
        overlap_ms=options.overlap_ms,
        shards=options.shards,
        events_per_ms=planner.density(shards),
        events_per_shard=options.page_size * 10,
    )
    if not new:
        return new, "up to date: no events newer than the last sync"
    return new, f"incremental: events newer than {covered} in {len(new)} shard(s)"
