"""The dataset guard of a run: the state belongs to this source's dataset, and a run that
finished every shard holds what the source states.

``check`` runs once the head is known, before any fetch: it compares the stored identity
with the source (``etl.identity``), raises ``SourceMismatch`` for a different dataset, or
with ``--full-refresh`` retires the state instead, and records the identity (a full sync
over rows kept by a reset or a refresh overwrites rows whose content differs).
``judge`` runs after every shard is done: complete, or ``incomplete`` with the shortfall.
In task mode (``etl.tasks``) a task is complete when its share is done; the dataset is
judged by the task that finds the whole plan done (``judge_run``).
Imports no aiohttp, asyncpg or rich: the parts arrive as Protocols.
"""

from __future__ import annotations

from dataclasses import replace

from etl import identity as ident
from etl.models import (
    FinalStatus,
    Position,
    Reporter,
    RunCounters,
    ShardState,
    Source,
    StateStore,
)
from etl.tasks import TaskShare


class DatasetGuard:
    def __init__(
        self,
        source: Source,
        store: StateStore,
        reporter: Reporter,
        identity: ident.SourceIdentity | None,
        *,
        full_refresh: bool,
    ) -> None:
        """``identity``: who the source is (api, key id); None turns every check off."""
        self.source = source
        self.store = store
        self.reporter = reporter
        self.identity = identity
        self.full_refresh = full_refresh

    @property
    def overwrite(self) -> bool:
        """A re-sync over kept rows is under way (see ``Batch.overwrite``)."""
        return self.identity is not None and self.identity.refresh

    async def check(
        self, shards: list[ShardState], head: Position | None, total: int | None
    ) -> list[ShardState]:
        """The shards to go on with (none after a full refresh). Raises ``SourceMismatch``."""
        current = self.identity
        if current is None:
            return shards
        stored = await self.store.load_identity()
        if self.full_refresh:
            retired = await self.store.reset_progress() if shards else 0
            self.reporter.message(
                f"--full-refresh: {retired} shard(s) retired; re-reading the whole source "
                "(rows already loaded stay and count)"
            )
            stored, shards = None, []
        elif stored is not None:
            verdict = await ident.verify(stored, current, total, self.source)
            if not verdict.same:
                raise ident.mismatch_error(stored, verdict)
            for note in verdict.notes:
                self.reporter.message(note)
            current = replace(stored, api=current.api, key_id=current.key_id)
        if stored is None:  # a new sync (or state kept before identities were): anchor it
            # a full sync over rows kept by a reset replaces the ones the source now has
            # differently (not when adopting the shards of an etl that kept no identity)
            kept = not shards and (await self.store.tally()).events > 0
            current = replace(current, newest=head, refresh=kept)
        if current.refresh:
            self.reporter.message(
                "re-syncing over rows kept from an earlier sync: a row whose content differs "
                "from the source's is replaced by it"
            )
        self.identity = current
        await self.store.save_identity(current)
        return shards

    async def judge_run(
        self,
        shards: list[ShardState],
        total: int | None,
        counters: RunCounters,
        share: TaskShare | None,
    ) -> tuple[FinalStatus, str]:
        """Every shard of this run is done. A task (``share``) succeeds with its share; the
        whole plan is judged by whichever task finds every shard done: each commits its last
        shard before it looks, so the last to finish sees them all."""
        if share is None:
            return await self.judge(shards, total, counters)
        every = await self.store.load_shards()
        left = sum(1 for s in every if s.status != "done")
        if left:
            return "succeeded", (
                f"{share.label}: its share is done; {left} shard(s) of other tasks remain "
                "(the task that finishes last judges completeness)"
            )
        return await self.judge(every, total, counters)

    async def judge(
        self, shards: list[ShardState], total: int | None, counters: RunCounters
    ) -> tuple[FinalStatus, str]:
        """After every shard finished: complete, or short of what the source states (the
        shortfall goes to ``counters.extra["missing"]``)."""
        # every shard read down to its bound and the open-ended one to the end of the data:
        # the lowest position any shard handled is the oldest event
        oldest = min((s.position for s in shards if s.position), default=None)
        if self.identity is not None:
            self.identity = ident.after_sync(self.identity, oldest, total)
            await self.store.save_identity(self.identity)
        if total is None:
            return "succeeded", ""
        tally = await self.store.tally()
        missing = total - tally.events - tally.quarantined
        counters.extra["missing"] = max(0, missing)  # kept with the run (extra)
        if missing <= 0:
            return "succeeded", ""
        return "incomplete", (
            f"every shard is done, but the table holds {tally.events:,} of the {total:,} events "
            f"the source states ({tally.quarantined:,} quarantined, {missing:,} missing); "
            "run `etl ingest --full-refresh` to re-read the source"
        )
