"""``PostgresSink``: the pipeline's ``Sink`` on PostgreSQL through an asyncpg pool.

Each ``write()`` runs in ONE transaction on one pooled connection: COPY into a per-connection
TEMP stage, ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING`` into ``events``, quarantine
upserts, the shard's progress row and a ``delivery_log`` row. So after a crash at any moment
the committed checkpoint and the committed rows agree. Concurrent ``write()`` calls are safe
(each takes its own connection); writes of ONE shard must be issued in order by the caller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from etl.errors import SinkError
from etl.models import (
    EVENT_COLUMNS,
    Batch,
    Position,
    Quarantined,
    RunCounters,
    ShardState,
    ShardStatus,
    WriteResult,
)
from etl.sink import runs
from etl.sink.dsn import redact_dsn, scrub
from etl.sink.lock import IngestLock
from etl.sink.schema import STAGE_DDL, STAGE_TABLE, migrate

log = logging.getLogger(__name__)

# Errors a database round trip can raise (asyncpg's DataError is also a ValueError; encoding
# a bad record in COPY raises ValueError/TypeError).
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    ValueError,
    TypeError,
)
_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_FAILURES: tuple[type[BaseException], ...] = (SinkError, *DB_ERRORS)
_WRITE_ATTEMPTS = 3

_COLS = ", ".join(EVENT_COLUMNS)
# ORDER BY id: concurrent transactions take index locks in the same order, so overlapping
# batches wait for each other instead of deadlocking.
_INSERT_EVENTS = (
    f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM {STAGE_TABLE} ORDER BY id "
    "ON CONFLICT (id) DO NOTHING"
)
_UPDATE_PROGRESS = """
UPDATE ingest_progress SET
    position_ts = coalesce($2, position_ts),
    position_id = coalesce($3, position_id),
    cursor = $4,
    status = $5,
    events = events + $6,
    duplicates = duplicates + $7,
    quarantined = quarantined + $8,
    pages = pages + $9,
    updated_at = now(),
    heartbeat_at = now()
WHERE shard_id = $1
"""
_UPSERT_QUARANTINE = """
INSERT INTO quarantine AS q
    (event_id, fingerprint, shard_id, run_id, reason, payload, payload_text, occurrences)
SELECT u.event_id, coalesce(u.event_id, 'md5:' || md5(u.payload)), $1, $2, u.reason, j.doc,
       CASE WHEN j.doc IS NULL THEN u.payload END, u.n
FROM unnest($3::text[], $4::text[], $5::text[], $6::int[]) AS u(event_id, reason, payload, n)
CROSS JOIN LATERAL (SELECT etl_try_jsonb(u.payload) AS doc) AS j
ON CONFLICT (fingerprint, reason)
DO UPDATE SET last_seen = now(),
              occurrences = q.occurrences + EXCLUDED.occurrences,
              shard_id = EXCLUDED.shard_id,
              run_id = EXCLUDED.run_id
"""
_INSERT_DELIVERY = """
INSERT INTO delivery_log (run_id, shard_id, provider, sent_at, duration_ms, rows_received,
    rows_written, duplicates, quarantined, columns, success, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_SHARD_COLS = (
    "shard_id, lower_ts, upper_ts, position_ts, position_id, cursor, status, events, pages"
)
_INSERT_SHARD = (
    f"INSERT INTO ingest_progress ({_SHARD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (shard_id) DO NOTHING"
)
_ARCHIVE_COLS = (
    "shard_id, lower_ts, upper_ts, position_ts, position_id, cursor, status, events, "
    "duplicates, quarantined, pages, created_at, updated_at, heartbeat_at"
)
_STATUSES: dict[str, ShardStatus] = {"pending": "pending", "running": "running", "done": "done"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One batch as recorded in ``delivery_log`` (also passed to ``on_delivery``)."""

    run_id: int | None
    shard_id: str
    provider: str
    sent_at: dt.datetime
    duration_ms: float
    rows_received: int
    rows_written: int
    duplicates: int
    quarantined: int
    columns: tuple[str, ...]
    success: bool
    error: str | None


def _clean(text: str) -> str:
    """Text PostgreSQL accepts: no NUL characters, valid UTF-8 (lone surrogates replaced)."""
    if not isinstance(text, str):  # defensive: quarantine must store anything
        text = bytes(text).decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _quarantine_args(
    items: Iterable[Quarantined],
) -> tuple[list[str | None], list[str], list[str], list[int]]:
    """Columns for the upsert; repeats of one (event_id or payload, reason) merged (ON
    CONFLICT DO UPDATE cannot touch a row twice in one statement)."""
    rows: list[list[Any]] = []
    by_key: dict[tuple[str | None, str, str | None], list[Any]] = {}
    for q in items:
        reason = _clean(q.reason)
        payload = _clean(q.payload)
        event_id = None if q.event_id is None else _clean(q.event_id)
        key = (event_id, reason, payload if event_id is None else None)
        row = by_key.get(key)
        if row is None:
            row = by_key[key] = [event_id, reason, payload, 1]
            rows.append(row)
        else:
            row[3] += 1
    return ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


def _shard_from_row(row: Any) -> ShardState:
    position = None
    if row["position_ts"] is not None:
        position = Position(int(row["position_ts"]), row["position_id"])
    status = _STATUSES.get(row["status"])
    if status is None:
        raise SinkError(f"shard {row['shard_id']} has an unknown status {row['status']!r}")
    return ShardState(
        shard_id=row["shard_id"],
        lower_ts=row["lower_ts"],
        upper_ts=row["upper_ts"],
        position=position,
        cursor=row["cursor"],
        status=status,
        events=int(row["events"]),
        pages=int(row["pages"]),
    )


def _shard_args(s: ShardState) -> tuple[Any, ...]:
    return (
        s.shard_id,
        s.lower_ts,
        s.upper_ts,
        s.position.ts_ms if s.position else None,
        s.position.id if s.position else None,
        s.cursor,
        s.status,
        s.events,
        s.pages,
    )


async def _init_connection(conn: Any) -> None:
    await conn.execute(STAGE_DDL)


class PostgresSink:
    """Async context manager owning an asyncpg pool; implements ``etl.models.Sink``.

    ``loaders`` is the number of concurrent ``write()`` calls expected (the pool has one more
    connection for runs and heartbeats). ``on_delivery`` is called after each batch (success or
    failure) with its ``Delivery`` record, e.g. to append to a local log file; it must not block.
    """

    def __init__(
        self,
        dsn: str,
        *,
        loaders: int = 2,
        run_id: int | None = None,
        provider: str = "datasync",
        connect_timeout: float = 10.0,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        if loaders < 1:
            raise ValueError("loaders must be >= 1")
        self._dsn = dsn
        self.loaders = loaders
        self.run_id = run_id
        self.provider = provider
        self._connect_timeout = connect_timeout
        self._on_delivery = on_delivery
        self._pool: Any = None
        self._lock: IngestLock | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def dsn_redacted(self) -> str:
        return redact_dsn(self._dsn)

    def _scrub(self, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return scrub(text, self._dsn)

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
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        except Exception as exc:
            raise SinkError(
                f"cannot connect to PostgreSQL at {where}: {self._scrub(exc)}"
            ) from None
        try:
            await migrate(conn)
        except DB_ERRORS as exc:
            raise SinkError(f"migrating the schema at {where} failed: {self._scrub(exc)}") from None
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.loaders + 1,
                init=_init_connection,
                timeout=self._connect_timeout,
            )
        except Exception as exc:
            raise SinkError(
                f"cannot connect to PostgreSQL at {where}: {self._scrub(exc)}"
            ) from None

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

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise SinkError("PostgresSink is not open (use 'async with PostgresSink(...)')")
        return self._pool

    # -- single-instance lock --------------------------------------------------------------

    async def try_lock(self) -> None:
        """Take the ingest lock for this sink's lifetime, or raise ``LockHeld`` at once."""
        if self._lock is None:
            self._lock = IngestLock(self._dsn, connect_timeout=self._connect_timeout)
        await self._lock.acquire()

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.held

    async def unlock(self) -> None:
        if self._lock is not None:
            await self._lock.release()

    # -- shards ----------------------------------------------------------------------------

    async def load_shards(self) -> list[ShardState]:
        rows = await self._fetch(
            "SELECT shard_id, lower_ts, upper_ts, position_ts, position_id, cursor, status,"
            " events, pages FROM ingest_progress ORDER BY created_at, shard_id",
            what="loading the progress rows",
        )
        return [_shard_from_row(r) for r in rows]

    async def add_shards(self, shards: list[ShardState]) -> None:
        """Insert progress rows for new shards; existing shard ids are left untouched."""
        if not shards:
            return
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                await conn.executemany(_INSERT_SHARD, [_shard_args(s) for s in shards])
        except DB_ERRORS as exc:
            raise SinkError(f"adding shards failed: {self._scrub(exc)}") from None

    async def replace_shard(self, old_id: str, new_shards: list[ShardState]) -> bool:
        """Atomically retire shard ``old_id`` (to the archive: its counters still count in
        ``ingest_totals``) and add ``new_shards`` (e.g. a split of its remaining range; a new
        shard may reuse ``old_id``). Returns False, changing nothing, if ``old_id`` does not
        exist or is already done."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.fetchval(
                    "SELECT status FROM ingest_progress WHERE shard_id = $1 FOR UPDATE", old_id
                )
                if status is None or status == "done":
                    return False
                await conn.execute(
                    f"INSERT INTO ingest_progress_archive ({_ARCHIVE_COLS}) "
                    f"SELECT {_ARCHIVE_COLS} FROM ingest_progress WHERE shard_id = $1",
                    old_id,
                )
                await conn.execute("DELETE FROM ingest_progress WHERE shard_id = $1", old_id)
                await conn.executemany(_INSERT_SHARD, [_shard_args(s) for s in new_shards])
                return True
        except DB_ERRORS as exc:
            raise SinkError(f"replacing shard {old_id} failed: {self._scrub(exc)}") from None

    async def split_shard(self, shard: ShardState, new: ShardState) -> bool:
        """Hand the older part of a live shard to ``new``: in one transaction the shard's
        ``lower_ts`` becomes ``shard.lower_ts`` (already moved up by the caller) and ``new``'s
        row is added. False, changing nothing, if the shard is gone or done."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                updated = await conn.execute(
                    "UPDATE ingest_progress SET lower_ts = $2, updated_at = now()"
                    " WHERE shard_id = $1 AND status <> 'done'",
                    shard.shard_id,
                    shard.lower_ts,
                )
                if updated != "UPDATE 1":
                    return False
                await conn.execute(_INSERT_SHARD, *_shard_args(new))
                return True
        except DB_ERRORS as exc:
            raise SinkError(
                f"splitting shard {shard.shard_id} failed: {self._scrub(exc)}"
            ) from None

    async def reset_progress(self) -> int:
        """For ``--full-refresh``: retire every progress row to the archive (counters kept
        for totals); never touches ``events``. Returns the number of shards retired."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE ingest_progress IN EXCLUSIVE MODE")
                await conn.execute(
                    f"INSERT INTO ingest_progress_archive ({_ARCHIVE_COLS}) "
                    f"SELECT {_ARCHIVE_COLS} FROM ingest_progress"
                )
                status: str = await conn.execute("DELETE FROM ingest_progress")
                return int(status.split()[-1])
        except DB_ERRORS as exc:
            raise SinkError(f"resetting progress failed: {self._scrub(exc)}") from None

    # -- writing ---------------------------------------------------------------------------

    async def write(self, batch: Batch) -> WriteResult:
        """Load one batch and move its shard's checkpoint, atomically. Raises ``SinkError``
        (nothing of the batch committed) on any database failure."""
        pool = self._require_pool()
        sent_at = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        failure: BaseException | None = None
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                result = await self._write_once(pool, batch, sent_at, t0)
            except _RETRYABLE as exc:
                failure = exc
                if attempt < _WRITE_ATTEMPTS:
                    log.info("retrying batch after %s", type(exc).__name__)
                    await asyncio.sleep(0.05 * attempt)
                    continue
            except _FAILURES as exc:
                failure = exc
            else:
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

    async def _write_once(
        self, pool: Any, batch: Batch, sent_at: dt.datetime, t0: float
    ) -> WriteResult:
        cp = batch.checkpoint
        n_records = len(batch.records)
        async with pool.acquire() as conn, conn.transaction():
            inserted = 0
            if n_records:
                await conn.copy_records_to_table(
                    STAGE_TABLE, records=batch.records, columns=EVENT_COLUMNS
                )
                status: str = await conn.execute(_INSERT_EVENTS)
                inserted = int(status.split()[-1])
            n_quarantined = len(batch.quarantined)
            if n_quarantined:
                await conn.execute(
                    _UPSERT_QUARANTINE,
                    cp.shard_id,
                    self.run_id,
                    *_quarantine_args(batch.quarantined),
                )
            duplicates = n_records - inserted
            updated: str = await conn.execute(
                _UPDATE_PROGRESS,
                cp.shard_id,
                cp.position.ts_ms if cp.position else None,
                cp.position.id if cp.position else None,
                cp.cursor,
                "done" if cp.done else "running",
                inserted,
                duplicates,
                n_quarantined,
                cp.pages,
            )
            if updated != "UPDATE 1":
                raise SinkError(
                    f"shard {cp.shard_id!r} has no progress row (add_shards() it first)"
                )
            await conn.execute(
                _INSERT_DELIVERY,
                self.run_id,
                cp.shard_id,
                self.provider,
                sent_at,
                (time.perf_counter() - t0) * 1000.0,
                batch.received,
                inserted,
                duplicates,
                n_quarantined,
                list(EVENT_COLUMNS),
                True,
                None,
            )
        return WriteResult(inserted=inserted, duplicates=duplicates, quarantined=n_quarantined)

    async def _log_failure(
        self, batch: Batch, sent_at: dt.datetime, t0: float, message: str
    ) -> None:
        """Record a failed batch in its own short transaction (best effort)."""
        self._notify(batch, sent_at, t0, None, message)
        try:
            async with asyncio.timeout(5):
                async with self._require_pool().acquire() as conn:
                    await conn.execute(
                        _INSERT_DELIVERY,
                        self.run_id,
                        batch.checkpoint.shard_id,
                        self.provider,
                        sent_at,
                        (time.perf_counter() - t0) * 1000.0,
                        batch.received,
                        0,
                        0,
                        0,
                        list(EVENT_COLUMNS),
                        False,
                        message,
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
        delivery = Delivery(
            run_id=self.run_id,
            shard_id=batch.checkpoint.shard_id,
            provider=self.provider,
            sent_at=sent_at,
            duration_ms=(time.perf_counter() - t0) * 1000.0,
            rows_received=batch.received,
            rows_written=result.inserted if result else 0,
            duplicates=result.duplicates if result else 0,
            quarantined=result.quarantined if result else 0,
            columns=EVENT_COLUMNS,
            success=result is not None,
            error=error,
        )
        try:
            self._on_delivery(delivery)
        except Exception:  # a logging hook must never break a load
            log.exception("on_delivery hook failed")

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, strategy: str, *, stale_after_s: float = 120.0) -> int:
        """Record a new 'running' run (its id becomes ``self.run_id``) after marking dead
        'running' runs as 'failed': all of them if this sink holds the ingest lock, else those
        whose heartbeat is older than ``stale_after_s``."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await runs.mark_stale_runs(
                    conn, stale_after_s=stale_after_s, exclude_run=None, lock_held=self.locked
                )
                self.run_id = await runs.insert_run(conn, strategy)
        except DB_ERRORS as exc:
            raise SinkError(f"recording the run failed: {self._scrub(exc)}") from None
        return self.run_id

    async def heartbeat(
        self, counters: RunCounters, shard_ids: Iterable[str] | None = None
    ) -> None:
        """Store the run's counters and refresh its heartbeat (and that of ``shard_ids``).

        Without a started run only the shards' heartbeats are refreshed."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                if self.run_id is not None:
                    await runs.update_run(conn, self.run_id, counters)
                if shard_ids:
                    await conn.execute(
                        "UPDATE ingest_progress SET heartbeat_at = now()"
                        " WHERE shard_id = ANY($1::text[])",
                        list(shard_ids),
                    )
        except DB_ERRORS as exc:
            raise SinkError(f"updating the run failed: {self._scrub(exc)}") from None

    async def finish_run(
        self, status: runs.RunStatus, counters: RunCounters, error: str | None = None
    ) -> None:
        if status not in runs.FINAL_STATUSES:
            raise ValueError(f"not a final run status: {status!r}")
        run_id = self._require_run()
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                await runs.end_run(
                    conn, run_id, status, counters, self._scrub(error) if error else None
                )
        except DB_ERRORS as exc:
            raise SinkError(f"recording the end of the run failed: {self._scrub(exc)}") from None

    def _require_run(self) -> int:
        if self.run_id is None:
            raise SinkError("no run started (call start_run() first)")
        return self.run_id

    # -- helpers ---------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any, what: str) -> list[Any]:
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                return cast(list[Any], await conn.fetch(sql, *args))
        except DB_ERRORS as exc:
            raise SinkError(f"{what} failed: {self._scrub(exc)}") from None
