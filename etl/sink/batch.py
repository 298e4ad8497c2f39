"""Writing one batch: the transaction that loads its events and moves its shard's checkpoint.

``write_batch`` runs in ONE transaction on the given connection: the events, quarantine
upserts, the shard's progress row and a ``delivery_log`` row. So after a crash at any moment
the committed checkpoint and the committed rows agree. The events go in one of two ways:

direct  COPY straight into ``events``. No stage, no sort, no second insert: PostgreSQL does
        about half the work per row. A batch holding an id that is already loaded fails with
        a unique violation; the whole transaction (COPY is its first statement, so nothing
        else is lost) is then redone the staged way.
staged  COPY into the connection's TEMP stage (``etl.sink.schema.STAGE_DDL``), then
        ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING``: absorbs re-reads.

A batch that failed is recorded by ``log_failure`` in a transaction of its own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

import asyncpg

from etl.errors import SinkError
from etl.models import EVENT_COLUMNS, Batch, Delivery, Quarantined, WriteResult
from etl.sink.schema import STAGE_TABLE

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


def make_delivery(
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    result: WriteResult | None,
    error: str | None,
) -> Delivery:
    """The record of ``batch``, timed from ``t0`` (``time.perf_counter()``) until now; a
    failure (``result`` None) wrote nothing."""
    return Delivery(
        run_id=run_id,
        shard_id=batch.checkpoint.shard_id,
        provider=provider,
        sent_at=sent_at,
        duration_ms=(time.perf_counter() - t0) * 1000.0,
        rows_received=batch.received,
        rows_written=result.inserted if result else 0,
        duplicates=result.duplicates if result else 0,
        quarantined=result.quarantined if result else 0,
        columns=EVENT_COLUMNS,
        success=result is not None,
        error=error,
        loaded_by=result.loaded_by if result else None,
    )


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


async def _insert_delivery(conn: Any, d: Delivery) -> None:
    await conn.execute(
        _INSERT_DELIVERY,
        d.run_id,
        d.shard_id,
        d.provider,
        d.sent_at,
        d.duration_ms,
        d.rows_received,
        d.rows_written,
        d.duplicates,
        d.quarantined,
        list(d.columns),
        d.success,
        d.error,
    )


async def write_batch(
    conn: Any,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    *,
    direct: bool = False,
) -> WriteResult:
    """Load ``batch`` and move its shard's checkpoint in one transaction on ``conn``.

    ``direct`` tries a COPY straight into ``events`` first; a batch that repeats an id, its
    own or a loaded one, then falls back to the staged upsert, so the result is the same
    either way. Raises ``SinkError`` if the
    shard has no progress row, and whatever the database raises (a deadlock included); either
    way nothing of the batch is committed."""
    if direct and batch.records:
        try:
            return await _write(conn, batch, run_id, provider, sent_at, t0, direct=True)
        except asyncpg.UniqueViolationError as exc:
            if exc.table_name != "events":
                raise
    return await _write(conn, batch, run_id, provider, sent_at, t0, direct=False)


async def _write(
    conn: Any,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    *,
    direct: bool,
) -> WriteResult:
    cp = batch.checkpoint
    n_records = len(batch.records)
    async with conn.transaction():
        inserted = 0
        if direct:
            await conn.copy_records_to_table("events", records=batch.records, columns=EVENT_COLUMNS)
            inserted = n_records
        elif n_records:
            await conn.copy_records_to_table(
                STAGE_TABLE, records=batch.records, columns=EVENT_COLUMNS
            )
            status: str = await conn.execute(_INSERT_EVENTS)
            inserted = int(status.split()[-1])
        n_quarantined = len(batch.quarantined)
        if n_quarantined:
            await conn.execute(
                _UPSERT_QUARANTINE, cp.shard_id, run_id, *_quarantine_args(batch.quarantined)
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
            raise SinkError(f"shard {cp.shard_id!r} has no progress row (add_shards() it first)")
        result = WriteResult(
            inserted=inserted,
            duplicates=duplicates,
            quarantined=n_quarantined,
            loaded_by="copy" if direct else "upsert",
        )
        await _insert_delivery(
            conn, make_delivery(batch, run_id, provider, sent_at, t0, result, None)
        )
    return result


async def log_failure(
    conn: Any,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    message: str,
) -> None:
    """Record ``batch`` as failed with ``message`` (already scrubbed) in ``delivery_log``."""
    await _insert_delivery(conn, make_delivery(batch, run_id, provider, sent_at, t0, None, message))
