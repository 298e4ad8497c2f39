"""``StreamSink``: any ``Stream`` on PostgreSQL, as the pipeline's Destination and StateStore.

For a source that is not DataSync (a declared REST stream, a third-party Python source):
the stream's own table (its declared columns and primary key, made if missing), its
shards in ``stream_shards`` and its status, counters and errors in ``stream_state``
(what `etl status`/`runs`/`health` show for every stream), rejects in
``stream_quarantine``. ``write`` commits a batch's rows, its rejects, its shard's
checkpoint and the stream's counters in ONE transaction: exactly once, resumable at every
page. Rows are inserted on the primary key with ``ON CONFLICT DO NOTHING`` (the first copy
wins, as in ``events``); a declared REST stream (``spec``) upserts instead, and the row whose
cursor value is newest wins (``etl.sink.streams.upsert_sql``). A chain's next request and
its mark also go to ``stream_state`` (what `etl status` shows). The lock is the source's.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from etl.errors import LockHeld, SinkError
from etl.identity import SourceIdentity
from etl.models import (
    Batch,
    FinalStatus,
    RunCounters,
    ShardState,
    Stream,
    Tally,
    WriteResult,
)
from etl.pg import DB_ERRORS, describe
from etl.rest.spec import StreamSpec
from etl.sink.dsn import redact_dsn
from etl.sink.stream_sql import (
    CHECKPOINT,
    COUNTERS,
    QUARANTINE,
    SHARD_COLS,
    insert_sql,
    shard_from,
    table_ddl,
)
from etl.sink.streams import DDL as STREAM_DDL
from etl.sink.streams import dedupe, upsert_sql
from etl.sink.streams import table_ddl as spec_table_ddl


class StreamSink:
    """Destination + StateStore for one stream of ``source`` (use as an async context)."""

    def __init__(
        self,
        dsn: str,
        source: str,
        stream: Stream,
        *,
        writers: int = 4,
        spec: StreamSpec | None = None,
        lock: bool = True,
    ) -> None:
        """``spec``: a declared REST stream (its table DDL, the upsert); ``lock``: False
        when the caller holds the source's lock already (streams of one ``etl sync``)."""
        self._dsn = dsn
        self.source = source
        self.stream = stream
        self._writers = writers
        self._spec = spec
        self._want_lock = lock
        self._pool: asyncpg.Pool | None = None
        self._lock: asyncpg.Connection | None = None
        self._insert = upsert_sql(spec) if spec is not None else insert_sql(stream)
        self._chain = stream.split != "time_range"

    def _fail(self, what: str, exc: BaseException) -> SinkError:
        return SinkError(f"{what} failed ({redact_dsn(self._dsn)}): {describe(exc, self._dsn)}")

    async def __aenter__(self) -> StreamSink:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._writers + 1
            )
            async with self._pool.acquire() as conn:
                if self._want_lock:  # else the lock's holder made them (etl.sink.streams)
                    ddl = (
                        table_ddl(self.stream) if self._spec is None else spec_table_ddl(self._spec)
                    )
                    await conn.execute(STREAM_DDL + ddl)
                await conn.execute(
                    "INSERT INTO stream_state (source, stream, table_name) VALUES ($1, $2, $3)"
                    " ON CONFLICT (source, stream) DO UPDATE SET table_name = excluded.table_name",
                    self.source,
                    self.stream.name,
                    self.stream.table_name,
                )
        except DB_ERRORS as exc:
            await self.__aexit__()
            raise self._fail(f"preparing {self.source}.{self.stream.name}", exc) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for closing in (self._lock, self._pool):
            if closing is not None:
                await closing.close()
        self._lock = self._pool = None

    @asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[Any]:
        if self._pool is None:
            raise SinkError("StreamSink used outside 'async with'")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise self._fail(what, exc) from exc

    # -- Destination ------------------------------------------------------------------
    async def write(self, batch: Batch) -> WriteResult:
        cp = batch.checkpoint
        columns = [list(c) for c in zip(*batch.records, strict=True)] if batch.records else []
        bad = [
            (hashlib.sha256(q.payload.encode()).hexdigest()[:32], q.reason, q.payload)
            for q in batch.quarantined
        ]
        key = (self.source, self.stream.name)
        async with self._conn(f"writing shard {cp.shard_id}") as conn, conn.transaction():
            inserted, written = await self._rows(conn, batch) if columns else (0, 0)
            if bad:
                await conn.execute(QUARANTINE, *key, *map(list, zip(*bad, strict=True)))
            if not self._chain:  # a chain's progress is its stream_state row
                await self._checkpoint(conn, batch, inserted)
            nxt = cp.cursor if self._chain else None
            counted = await conn.execute(COUNTERS, *key, written, len(bad), cp.pages, cp.mark, nxt)
            if counted != "UPDATE 1":
                raise SinkError(f"stream {self.stream.name!r} has no stream_state row")
        duplicates = len(batch.records) - inserted
        return WriteResult(inserted, duplicates, len(bad))

    async def _checkpoint(self, conn: Any, batch: Batch, inserted: int) -> None:
        cp, pos = batch.checkpoint, batch.checkpoint.position
        done = await conn.execute(
            CHECKPOINT, self.source, self.stream.name, cp.shard_id, pos and pos.ts_ms,
            pos and pos.id, cp.cursor, "done" if cp.done else "running", inserted, cp.pages,
        )  # fmt: skip
        if done != "UPDATE 1":
            raise SinkError(f"shard {cp.shard_id!r} has no progress row (add_shards() it)")

    async def _rows(self, conn: Any, batch: Batch) -> tuple[int, int]:
        """The batch's rows into the table: (how many were new, how many were written).
        A re-read row already there is neither; an upsert's newer version is written."""
        if self._spec is None:
            columns = [list(c) for c in zip(*batch.records, strict=True)]
            new = int((await conn.execute(self._insert, *columns)).split()[-1])
            return new, new
        rows = dedupe(self._spec, batch.records)  # one statement may touch a key once
        result = await conn.fetch(self._insert, *[list(c) for c in zip(*rows, strict=True)])
        return sum(1 for r in result if r["inserted"]), len(result)

    async def mark(self) -> str | None:
        """The stream's committed mark (an incremental stream's cursor value)."""
        async with self._conn("reading the stream's mark") as conn:
            value: str | None = await conn.fetchval(
                "SELECT cursor_value FROM stream_state WHERE source = $1 AND stream = $2",
                self.source,
                self.stream.name,
            )
        return value

    # -- StateStore -------------------------------------------------------------------
    async def try_lock(self) -> None:
        if not self._want_lock:
            return
        try:
            self._lock = await asyncpg.connect(self._dsn)
            got = await self._lock.fetchval(
                "SELECT pg_try_advisory_lock(hashtext('etl-source:' || $1))", self.source
            )
        except DB_ERRORS as exc:
            raise self._fail("taking the source's lock", exc) from exc
        if not got:
            raise LockHeld(f"another sync of {self.source} is running against this database")

    @asynccontextmanager
    async def planning(self) -> AsyncIterator[None]:
        yield  # one process per source (the lock): nobody to plan with

    async def start_run(self, strategy: str) -> int:
        await self._status("running", start=True)
        return 0

    async def finish_run(
        self, status: FinalStatus, counters: RunCounters, error: str | None = None
    ) -> None:
        await self._status(status, error=error)

    async def _status(self, status: str, *, start: bool = False, error: str | None = None) -> None:
        async with self._conn("recording the stream's status") as conn:
            await conn.execute(
                "UPDATE stream_state SET status = $3, last_error = $4, updated_at = now(),"
                " started_at = CASE WHEN $5 THEN now() ELSE started_at END,"
                " finished_at = CASE WHEN $5 THEN NULL ELSE now() END"
                " WHERE source = $1 AND stream = $2",
                self.source, self.stream.name, status, error, start,
            )  # fmt: skip

    async def load_shards(self) -> list[ShardState]:
        """A chain's one shard is its ``stream_state`` row: unfinished while it stores a
        next request (also one an earlier etl stored there)."""
        if self._chain:
            async with self._conn("loading the stream's progress") as conn:
                nxt = await conn.fetchval(
                    "SELECT next_request FROM stream_state WHERE source = $1 AND stream = $2",
                    self.source,
                    self.stream.name,
                )
            if nxt is None:
                return []
            return [ShardState(self.stream.name, None, None, cursor=nxt, status="running")]
        async with self._conn("loading the stream's shards") as conn:
            rows = await conn.fetch(
                f"SELECT {SHARD_COLS} FROM stream_shards WHERE source = $1 AND stream = $2"
                " ORDER BY shard_id",
                self.source,
                self.stream.name,
            )
        return [shard_from(r) for r in rows]

    async def add_shards(self, shards: list[ShardState]) -> None:
        if self._chain:
            return  # the stream_state row is there (``__aenter__``)
        async with self._conn("adding shards") as conn:
            await conn.executemany(
                "INSERT INTO stream_shards (source, stream, shard_id, lower_ts, upper_ts)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                [(self.source, self.stream.name, s.shard_id, s.lower_ts, s.upper_ts)
                 for s in shards],
            )  # fmt: skip

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        key = (self.source, self.stream.name)
        async with self._conn(f"splitting shard {shard.shard_id}") as conn, conn.transaction():
            moved = await conn.execute(
                "UPDATE stream_shards SET lower_ts = $4 WHERE source = $1 AND stream = $2"
                " AND shard_id = $3 AND status <> 'done'",
                *key, shard.shard_id, new.upper_ts,
            )  # fmt: skip
            if moved != "UPDATE 1":
                return False
            await conn.execute(
                "INSERT INTO stream_shards (source, stream, shard_id, lower_ts, upper_ts)"
                " VALUES ($1, $2, $3, $4, $5)",
                *key, new.shard_id, new.lower_ts, new.upper_ts,
            )  # fmt: skip
        return True

    async def tally(self) -> Tally:
        loaded = (
            "(SELECT rows_written FROM stream_state WHERE source = $1 AND stream = $2)"
            if self._chain
            else "(SELECT coalesce(sum(events), 0) FROM stream_shards"
            " WHERE source = $1 AND stream = $2)"
        )
        async with self._conn("reading the stream's totals") as conn:
            row = await conn.fetchrow(
                f"SELECT {loaded} AS events,"
                " (SELECT count(*) FROM stream_quarantine WHERE source = $1 AND stream = $2)"
                " AS quarantined",
                self.source,
                self.stream.name,
            )
        assert row is not None
        return Tally(int(row["events"]), int(row["quarantined"]))

    async def load_identity(self) -> SourceIdentity | None:
        return None  # no dataset checks: a third-party source states no identity

    async def save_identity(self, identity: SourceIdentity) -> None:
        return None

    async def reset_progress(self) -> int:
        async with self._conn("resetting the stream's progress") as conn:
            if self._chain:
                await conn.execute(
                    "UPDATE stream_state SET next_request = NULL WHERE source = $1 AND stream = $2",
                    self.source,
                    self.stream.name,
                )
                return 1
            done = await conn.execute(
                "DELETE FROM stream_shards WHERE source = $1 AND stream = $2",
                self.source,
                self.stream.name,
            )
        return int(done.split()[-1])

    async def repair_targets(self) -> list[int]:
        return []  # incomplete records are quarantined, not held for repair

    async def heartbeat(self, counters: RunCounters) -> None:
        async with self._conn("updating the stream") as conn:
            await conn.execute(
                "UPDATE stream_state SET updated_at = now() WHERE source = $1 AND stream = $2",
                self.source,
                self.stream.name,
            )
