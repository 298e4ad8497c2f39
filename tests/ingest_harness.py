"""Run a real ingest in the test's event loop: real sandbox, real PostgreSQL, virtual time.

The client's clock (``etl.clock.FakeClock``, autojump) and the sandbox's clock are linked:
the sandbox reads epoch seconds = ``EPOCH0 + client.now()``, so a rate-limit window the
client waits out is also over for the server, and minutes of API time pass in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from etl.clock import FakeClock
from etl.identity import SourceIdentity, api_label, key_id
from etl.models import Delivery, RunCounters, ShardState
from etl.pipeline import Outcome, PipelineOptions, Run
from etl.sink.postgres import PostgresSink
from etl.source.datasync import EVENTS, DataSyncSource, SourceOptions
from etl.source.http import Http
from etl.wiring import run_ingest

EPOCH0 = 1_771_533_513.323


class LinkedClock:
    """The sandbox's epoch clock, driven by the client's virtual clock."""

    def __init__(self, client: FakeClock, skew_s: float = 0.0) -> None:
        self.client = client
        self.skew_s = skew_s

    def time(self) -> float:
        return EPOCH0 + self.client.now() + self.skew_s

    def advance(self, seconds: float) -> None:
        self.client.advance(seconds)

    async def sleep(self, seconds: float) -> None:
        """The sandbox's page latency waits on the client's virtual clock too."""
        await self.client.sleep(seconds)


@dataclass
class Recorder:
    """A Reporter that keeps what it was told (and can stop the run once N batches were
    committed, as a signal would: deterministic, whatever the speed of the machine)."""

    messages: list[str] = field(default_factory=list)
    updates: int = 0
    stop_after_batches: int | None = None
    batches: int = 0
    pages_held: list[int] = field(default_factory=list)
    run: Run | None = None
    sink: Any = None  # the PostgresSink of the run
    # called (synchronously, in the loop) with the number of batches delivered so far
    on_batch: Callable[[int], None] | None = None

    def message(self, text: str) -> None:
        self.messages.append(text)

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        self.updates += 1

    def delivered(self, delivery: Delivery) -> None:
        if self.run is not None:  # fetched, not yet committed (this batch included)
            self.pages_held.append(self.run.counters.pages - self.batches)
        self.batches += 1
        limit = self.stop_after_batches
        if self.run is not None and limit is not None and self.batches >= limit:
            self.run.request_stop("test stop")
        if self.on_batch is not None:
            self.on_batch(self.batches)


async def ingest(
    base_url: str,
    api_key: str,
    db_url: str,
    clock: FakeClock,
    *,
    client_skew_s: float = 0.0,
    source: dict[str, Any] | None = None,
    pipeline: dict[str, Any] | None = None,
    reporter: Recorder | None = None,
    sink: dict[str, Any] | None = None,
    http: dict[str, Any] | None = None,
) -> Outcome:
    """One `etl ingest` run through the CLI's own wiring (``etl.wiring.run_ingest``), with
    injected time. ``sink`` holds extra ``PostgresSink`` arguments."""
    counters = RunCounters()
    reporter = reporter or Recorder()

    def now_ms() -> int:
        return int((EPOCH0 + clock.now() + client_skew_s) * 1000)

    opts = SourceOptions(**{"backoff_base_s": 0.05, "backoff_cap_s": 1.0, **(source or {})})
    options = PipelineOptions(**{"shards": 6, "tick_s": 1.0, **(pipeline or {})})
    async with (
        PostgresSink(
            db_url,
            stream=EVENTS,
            loaders=options.loaders,
            on_delivery=reporter.delivered,
            **(sink or {}),
        ) as pg,
        Http(base_url, api_key, **(http or {})) as client,
    ):
        await pg.try_lock()
        reporter.sink = pg
        src = DataSyncSource(client, clock, counters, opts, now_ms=now_ms)

        def attach(run: Run) -> None:
            reporter.run = run

        return await run_ingest(
            src,
            pg,
            pg,
            reporter,
            clock,
            options,
            counters=counters,
            on_run=attach,
            identity=SourceIdentity(api_label(base_url), key_id(api_key)),
        )


async def loaded_ids(db_url: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT id::text AS id FROM events")
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def query(db_url: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
