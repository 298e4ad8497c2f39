"""``PostgresSink``: the pipeline's ``Sink`` on PostgreSQL through an asyncpg pool.

The sink owns the lifecycle (schema migration, the pool, the single-instance lock), turns
database errors into ``SinkError`` with the DSN's secrets scrubbed, retries a batch that hit a
deadlock and calls the ``on_delivery`` hook. The SQL lives in the modules it delegates to:
``batch`` (one batch's write transaction), ``progress`` (shard rows) and ``runs``.

It loads the ``Stream`` it is given (``stream=``): the COPY's table and columns are the
stream's. What it adds to a plain load (rollups, repairs of stripped rows, ``etl purge``'s
filters, the push outbox, the ``ingest_progress`` shards) is the ``events`` stream's own
extension, so it serves a stream of that shape only (``events_extensions``: DataSync's,
``etl.source.datasync.events_stream``) and refuses any other with ``ConfigError``; other
streams go through ``etl.sink.stream_sink.StreamSink``.
Concurrent ``write()`` calls are safe (each takes its own pooled connection); writes of ONE
shard must be issued in order by the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from etl.errors import ConfigError, EtlError, LockHeld, SinkError, StoppedInOutage
from etl.identity import SourceIdentity
from etl.models import (
    FINAL_STATUSES,
    Batch,
    Delivery,
    FinalStatus,
    RunCounters,
    ShardState,
    Stream,
    Tally,
    WriteResult,
)
from etl.pg import DB_ERRORS, Conn, Pool, connection, db_error, describe
from etl.settings import DEFAULTS
from etl.sink import identity, progress, runs
from etl.sink.batch import Repairs, log_failure, make_delivery, write_batch
from etl.sink.dsn import redact_dsn, scrub
from etl.sink.lock import IngestLock
from etl.sink.outage import Outage, is_connection_loss, quiet_asyncpg
from etl.sink.purge import PurgeFilter, drop_purged, load_rules
from etl.sink.schema import STAGE_DDL, STRIPPED_SQL, migrate
from etl.sources import events
from etl.tasks import TaskShare
from etl.timestamps import EPOCH, to_utc

__all__ = ["PostgresSink", "events_extensions"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_FAILURES: tuple[type[BaseException], ...] = (SinkError, *DB_ERRORS)
# what using a pooled connection can raise (a protocol a lost connection left mid-operation)
_USE_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncpg.InternalClientError)
_WRITE_ATTEMPTS = 3


COMMAND_TIMEOUT_S = 300.0


async def _init_connection(conn: Conn) -> None:
    # synchronous_commit stays on: a run that rides through a server crash goes on from
    # the positions it was told are committed, so an acknowledged commit must survive the
    # crash (with it off, the last ~0.6 s of commits vanish and this run never re-reads
    # them). Measured on the load alone (bench_sink, noisy machine): no clear cost.
    await conn.execute(STAGE_DDL)


_STRIPPED_TIMES = f"""
SELECT (extract(epoch FROM occurred_at) * 1000)::bigint FROM events WHERE {STRIPPED_SQL}
ORDER BY occurred_at LIMIT 100000
"""
_UNRESOLVED_TIMES = """
SELECT payload->'timestamp' #>> '{}' FROM quarantine
WHERE missing IS NOT NULL AND resolved_at IS NULL AND payload ? 'timestamp' LIMIT 100000
"""


async def _load_repairs(conn: Conn) -> Repairs:
    stripped = await conn.fetchval(f"SELECT count(*) FROM events WHERE {STRIPPED_SQL}")
    rows = await conn.fetch(
        "SELECT event_id FROM quarantine"
        " WHERE missing IS NOT NULL AND resolved_at IS NULL AND event_id IS NOT NULL"
    )
    return Repairs(stripped=int(stripped), unresolved={r[0] for r in rows})


def events_extensions(stream: Stream) -> None:
    """Check that ``stream`` is of the ``events`` shape this sink's extensions are written
    for (table ``events``, ``etl.sources.events.COLUMNS`` in that order, key ``id``: the
    rollups, repairs, purge filters and outbox read rows by those positions and that table);
    raise ``ConfigError`` saying what differs otherwise."""
    want = (events.STREAM, events.COLUMNS, events.PRIMARY_KEY)
    if (stream.table_name, stream.columns, stream.primary_key) == want:
        return
    raise ConfigError(
        f"PostgresSink loads the events stream only (table {events.STREAM!r}, columns "
        f"{', '.join(events.EVENT_COLUMNS)}, key {', '.join(events.PRIMARY_KEY)}); stream "
        f"{stream.name!r} (table {stream.table_name!r}, columns "
        f"{', '.join(stream.column_names)}, key {', '.join(stream.primary_key)}) goes through "
        "etl.sink.stream_sink.StreamSink"
    )


class PostgresSink:
    """Async context manager owning an asyncpg pool; implements ``etl.models.Sink``.

    ``stream``: what it loads, of the ``events`` shape (``events_extensions``; else
    ``ConfigError``). ``loaders`` is the number of concurrent ``write()`` calls expected (the
    pool has one more connection for runs and heartbeats). ``direct_copy`` lets a shard whose
    last batch added only new rows COPY its next one straight into the stream's table (see
    ``etl.sink.batch``).
    ``on_delivery`` is called after each batch (success or failure) with its ``Delivery``
    record, e.g. to append to a local log file; it must not block.
    """

    def __init__(
        self,
        dsn: str,
        *,
        stream: Stream,
        loaders: int = DEFAULTS.loaders,
        run_id: int | None = None,
        provider: str = "datasync",
        connect_timeout: float = 10.0,
        on_delivery: Callable[[Delivery], None] | None = None,
        direct_copy: bool = True,
        outage_s: float = DEFAULTS.db_outage_s,
        stop: asyncio.Event | None = None,
        share: TaskShare | None = None,
    ) -> None:
        """``share``: task mode (``etl.tasks``): the lock is the share's, planning is serialised."""
        events_extensions(stream)
        self.stream = stream
        # looked up once per batch: the COPY's table and column list
        self._table = stream.table_name
        self._columns = stream.column_names
        self._dsn = dsn
        self._share = share
        self.loaders = loaders
        self.run_id = run_id
        self.provider = provider
        self._connect_timeout = connect_timeout
        self._on_delivery = on_delivery
        self._pool: Pool | None = None
        self._lock: IngestLock | None = None
        self._direct_copy = direct_copy
        # per shard: did its last batch load without touching existing rows? Then the next
        # one tries the direct COPY (see etl.sink.batch); one that overlapped goes staged.
        self._fresh: dict[str, bool] = {}
        self._repairs = Repairs()
        self._want_lock = False
        # a lost connection is waited for (up to outage_s); the lock is re-taken first
        self.outage = Outage(
            dsn, ride_s=outage_s, relock=self._relock, lock_lost=self._lock_lost, stop=stop
        )
        quiet_asyncpg()
        # events `etl purge` deleted and asked not to reload (etl.sink.purge)
        self._purged: tuple[PurgeFilter, ...] = ()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def direct_copy(self) -> bool:
        return self._direct_copy

    @property
    def dsn_redacted(self) -> str:
        return redact_dsn(self._dsn)

    def _scrub(self, exc: BaseException | str) -> str:
        """What happened, in words (``etl.pg.describe``), with the DSN's password masked."""
        return scrub(exc, self._dsn) if isinstance(exc, str) else describe(exc, self._dsn)

    async def __aenter__(self) -> PostgresSink:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, migrate the schema, open the pool. Raises ``SinkError``."""
        if self._pool is not None:
            return
        where = self.dsn_redacted
        async with connection(
            self._dsn, "migrating the schema", connect_timeout_s=self._connect_timeout
        ) as conn:
            await migrate(conn)
            self._repairs = await _load_repairs(conn)
            self._purged = await load_rules(conn)
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                # no floor: asyncpg would log a traceback for each failed attempt to restore
                # it during an outage; connections are (re)made on demand instead
                min_size=0,
                max_size=self.loaders + 1,
                init=_init_connection,
                timeout=self._connect_timeout,
                # a database that stops answering fails the run (exit 6) instead of hanging
                # it, and with it the lock every later cron run would wait behind
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except DB_ERRORS as exc:
            raise SinkError(f"cannot connect to PostgreSQL at {where}: {self._scrub(exc)}") from exc

    async def close(self) -> None:
        """Release the lock and close the pool (idempotent)."""
        try:
            if self._lock is not None:
                await self._lock.release()
                self._lock = None
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=10)
                except DB_ERRORS:
                    pool.terminate()

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise SinkError("PostgresSink is not open (use 'async with PostgresSink(...)')")
        return self._pool

    async def _do(self, what: str, fn: Callable[[Any], Awaitable[T]], *, write: bool = True) -> T:
        """``fn(conn)`` on a pooled connection, through a database outage (see
        ``etl.sink.outage``): a write makes sure the ingest lock is still ours first."""

        async def attempt() -> T:
            async with self._connection(what) as conn:
                return await fn(conn)

        return await self.outage.run(what, attempt, write=write)

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        """A pooled connection; one that lost its server (or its protocol state) on the way
        is terminated, never handed out again."""
        async with self._require_pool().acquire() as conn:
            try:
                yield conn
            except BaseException as exc:
                if is_connection_loss(exc):
                    conn.terminate()
                raise

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Any]:
        """A pooled connection; a database error while using it becomes
        ``SinkError("<what> failed: <scrubbed error>")``."""
        try:
            async with self._acquire() as conn:
                yield conn
        except _USE_ERRORS as exc:
            raise db_error(what, exc, self._dsn) from exc

    # -- single-instance lock --------------------------------------------------------------

    async def try_lock(self) -> None:
        """Take the ingest lock for this sink's lifetime, or raise ``LockHeld`` at once."""
        if self._lock is None:
            self._lock = IngestLock(
                self._dsn, connect_timeout=self._connect_timeout, share=self._share
            )
        await self._lock.acquire()
        self._want_lock = True

    def _lock_lost(self) -> bool:
        return self._want_lock and not self.locked

    async def _relock(self) -> None:
        assert self._lock is not None
        await self._lock.acquire()

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.held

    @asynccontextmanager
    async def planning(self) -> AsyncIterator[None]:
        """Plan alone: in task mode, under the planning lock (see ``etl.sink.lock``)."""
        if self._lock is None:
            yield
            return
        async with self._lock.planning():
            yield

    async def unlock(self) -> None:
        self._want_lock = False
        if self._lock is not None:
            await self._lock.release()

    # -- shards ----------------------------------------------------------------------------

    async def load_shards(self) -> list[ShardState]:
        return await self._do("loading the progress rows", progress.load_shards, write=False)

    async def add_shards(self, shards: list[ShardState]) -> None:
        """Insert progress rows for new shards; existing shard ids are left untouched."""
        if not shards:
            return
        await self._do("adding shards", lambda conn: progress.add_shards(conn, shards))

    async def replace_shard(self, old_id: str, new_shards: list[ShardState]) -> bool:
        """Atomically retire shard ``old_id`` (to the archive: its counters still count in
        ``ingest_totals``) and add ``new_shards`` (e.g. a split of its remaining range; a new
        shard may reuse ``old_id``). Returns False, changing nothing, if ``old_id`` does not
        exist or is already done."""
        return await self._do(
            f"replacing shard {old_id}",
            lambda conn: progress.replace_shard(conn, old_id, new_shards),
        )

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        """Hand the older part of a live shard to ``new``: in one transaction the shard's
        ``lower_ts`` becomes ``new.upper_ts`` and ``new``'s row is added. False, changing
        nothing, if the shard is gone or done."""
        return await self._do(
            f"splitting shard {shard.shard_id}",
            lambda conn: progress.split_shard(conn, shard, new),
        )

    async def reset_progress(self) -> int:
        """For a full re-sync: retire every progress row to the archive (counters kept for
        totals) and forget the source identity, in one transaction; never touches
        ``events``. Returns the number of shards retired."""
        return await self._do("resetting progress", identity.retire_everything)

    async def repair_targets(self) -> list[int]:
        """Epoch-ms timestamps whose events need a complete copy: stripped rows in
        ``events`` and quarantined incomplete events still unresolved (oldest first)."""
        if not self._repairs.stripped and not self._repairs.unresolved:
            return []

        async def read(conn: Any) -> tuple[list[Any], list[Any]]:
            return await conn.fetch(_STRIPPED_TIMES), await conn.fetch(_UNRESOLVED_TIMES)

        rows, payloads = await self._do("finding incomplete events", read, write=False)
        out = [int(r[0]) for r in rows]
        for r in payloads:
            try:
                out.append((to_utc(r[0]) - EPOCH) // dt.timedelta(milliseconds=1))
            except (EtlError, ValueError, TypeError):
                continue  # its timestamp is unreadable: only a later read can bring it
        return sorted(out)

    @property
    def incomplete(self) -> tuple[int, int]:
        """(stripped rows in ``events``, quarantined incomplete events unresolved)."""
        return self._repairs.stripped, len(self._repairs.unresolved)

    async def reset_shards(self, shard_ids: list[str]) -> list[str]:
        """Start ``shard_ids`` over (re-read whole; loaded rows stay and count). Returns the
        ids that do not exist, changing nothing then."""
        return await self._do("resetting shards", lambda c: progress.reset_shards(c, shard_ids))

    async def drop_everything(self) -> int:
        """DELETE every loaded event and all sync state (history stays). Returns the count
        of events it held."""
        return await self._do("dropping the loaded data", progress.drop_everything)

    # -- the source's identity and the sync's tally ----------------------------------------

    async def load_identity(self) -> SourceIdentity | None:
        return await self._do("reading the source identity", identity.load_identity, write=False)

    async def save_identity(self, source: SourceIdentity) -> None:
        await self._do("recording the source identity", lambda c: identity.save_identity(c, source))

    async def tally(self) -> Tally:
        """Events loaded (progress counters, live and retired) and distinct quarantined."""
        return await self._do("reading the totals", identity.tally, write=False)

    # -- writing ---------------------------------------------------------------------------

    async def write(self, batch: Batch) -> WriteResult:
        """Load one batch and move its shard's checkpoint, atomically. Raises ``SinkError``
        (nothing of the batch committed) on any database failure."""
        self._require_pool()
        sent_at = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        failure: BaseException | None = None
        shard_id = batch.checkpoint.shard_id
        purged = 0
        if self._purged:  # events `etl purge` removed stay out; counted as duplicates
            received = len(batch.records)
            batch = drop_purged(batch, self._purged)
            purged = received - len(batch.records)
        direct = self._direct_copy and self._fresh.get(shard_id, True)

        async def once() -> WriteResult:
            async with self._acquire() as conn:
                return await write_batch(
                    conn,
                    batch,
                    self.run_id,
                    self.provider,
                    sent_at,
                    t0,
                    table=self._table,
                    columns=self._columns,
                    direct=direct,
                    repairs=self._repairs,
                )

        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                # one transaction: a retry after a lost connection is safe (it either
                # committed, and the re-load is absorbed as duplicates, or left nothing)
                result = await self.outage.run(f"writing shard {shard_id}", once)
                self._fresh[shard_id] = result.duplicates == 0
            except (LockHeld, StoppedInOutage):
                raise
            except _RETRYABLE as exc:
                failure = exc
                # unordered direct COPYs of overlapping batches can deadlock; the staged
                # insert takes its locks in id order
                direct = False
                if attempt < _WRITE_ATTEMPTS:
                    log.info("retrying batch after %s", type(exc).__name__)
                    await asyncio.sleep(0.05 * attempt)
                    continue
            except _FAILURES as exc:
                failure = exc
            else:
                if purged:
                    result = dataclasses.replace(result, duplicates=result.duplicates + purged)
                self._notify(batch, sent_at, t0, result, None)
                return result
            break
        assert failure is not None
        message = self._scrub(str(failure) if isinstance(failure, SinkError) else failure)
        await self._log_failure(batch, sent_at, t0, message)
        raise SinkError(
            f"writing {len(batch.records)} events for shard {batch.checkpoint.shard_id} "
            f"failed: {message}"
        ) from failure

    async def _log_failure(
        self, batch: Batch, sent_at: dt.datetime, t0: float, message: str
    ) -> None:
        """Record a failed batch in its own short transaction (best effort)."""
        self._notify(batch, sent_at, t0, None, message)
        try:
            async with asyncio.timeout(5):
                async with self._require_pool().acquire() as conn:
                    await log_failure(
                        conn,
                        batch,
                        self.run_id,
                        self.provider,
                        sent_at,
                        t0,
                        message,
                        columns=self._columns,
                    )
        except _FAILURES as exc:
            log.warning("could not record the failed batch in delivery_log: %s", self._scrub(exc))

    def _notify(
        self,
        batch: Batch,
        sent_at: dt.datetime,
        t0: float,
        result: WriteResult | None,
        error: str | None,
    ) -> None:
        if self._on_delivery is None:
            return
        delivery = make_delivery(
            batch, self.run_id, self.provider, sent_at, t0, result, error, columns=self._columns
        )
        try:
            self._on_delivery(delivery)
        except Exception:  # a logging hook must never break a load
            log.exception("on_delivery hook failed")

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, strategy: str, *, stale_after_s: float = 120.0) -> int:
        """Record a new 'running' run (its id becomes ``self.run_id``) after marking dead
        'running' runs as 'failed': all of them if this sink holds the ingest lock alone, else
        those whose heartbeat is older than ``stale_after_s`` (other tasks' runs are alive)."""
        locked = self._lock is not None and self._lock.exclusive

        async def record(conn: Any) -> int:
            async with conn.transaction():
                await runs.mark_stale_runs(
                    conn, stale_after_s=stale_after_s, exclude_run=None, lock_held=locked
                )
                run_id: int = await runs.insert_run(conn, strategy)
                return run_id

        self.run_id = await self._do("recording the run", record)
        return self.run_id

    async def heartbeat(
        self, counters: RunCounters, shard_ids: Iterable[str] | None = None
    ) -> None:
        """Store the run's counters and refresh its heartbeat (and that of ``shard_ids``).

        Without a started run only the shards' heartbeats are refreshed."""
        run_id = self.run_id
        touched = list(shard_ids or ())

        async def beat(conn: Any) -> None:
            if run_id is not None:
                await runs.update_run(conn, run_id, counters)
            if touched:
                await progress.touch_shards(conn, touched)

        await self._do("updating the run", beat)

    async def finish_run(
        self, status: FinalStatus, counters: RunCounters, error: str | None = None
    ) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final run status: {status!r}")
        run_id = self._require_run()
        text = self._scrub(error) if error else None
        await self._do(
            "recording the end of the run",
            lambda conn: runs.end_run(conn, run_id, status, counters, text),
        )

    def _require_run(self) -> int:
        if self.run_id is None:
            raise SinkError("no run started (call start_run() first)")
        return self.run_id
