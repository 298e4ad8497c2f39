"""Writing one batch: the transaction that loads its events and moves its shard's checkpoint.

``write_batch`` runs in ONE transaction on the given connection: the events, quarantine
upserts, the shard's progress row, a ``delivery_log`` row and, when push datasets are
declared, the outbox rows owing them the batch's new events (``etl.sink.outbox``). So
after a crash at any moment the committed checkpoint and the committed rows agree. The
events go in one of two ways:

direct  COPY straight into ``events``. No stage, no sort, no second insert: PostgreSQL does
        about half the work per row. A batch holding an id that is already loaded fails with
        a unique violation; the whole transaction (COPY is its first statement, so nothing
        else is lost) is then redone the staged way.
staged  COPY into the connection's TEMP stage (``etl.sink.schema.STAGE_DDL``), then
        ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING``: absorbs re-reads.

Either way the rows that were new are added to the rollups in the same transaction
(``etl.sink.rollups``: a statement trigger on ``events`` sums what each INSERT or COPY inserted),
and a repair of stripped rows moves them between rollup groups.

A batch that failed is recorded by ``log_failure`` in a transaction of its own.

The COPY's table and column list are the stream's (``PostgresSink`` passes them from the
``Stream`` it loads); the rest of the SQL here (the staged insert with its rollups, repairs
and refreshes of stripped rows, the incomplete-event quarantine, the push outbox) is the
``events`` stream's own extension, which ``PostgresSink`` enables only for a stream of that
shape (``etl.sink.postgres.events_extensions``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from etl.errors import SinkError
from etl.models import Batch, Delivery, Quarantined, WriteResult
from etl.pg import Conn
from etl.sink import outbox, rollups
from etl.sink.schema import STAGE_TABLE, STRIPPED_SQL
from etl.sources.events import EVENT_COLUMNS


def _stripped(alias: str) -> str:
    """``STRIPPED_SQL`` with its columns qualified by ``alias``."""
    return re.sub(r"\b(session_id|user_id|name|session|properties)\b", rf"{alias}.\1", STRIPPED_SQL)


_COLS = ", ".join(EVENT_COLUMNS)
# ORDER BY id: concurrent transactions take index locks in the same order, so overlapping
# batches wait for each other instead of deadlocking.
# ... returns how many rows it really inserted (the insert trigger adds them to the rollups)
_INSERT_STAGED = (
    f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM {STAGE_TABLE} ORDER BY id "
    "ON CONFLICT (id) DO NOTHING"
)
_INSERT_EVENTS = f"WITH src AS ({_INSERT_STAGED} RETURNING 1) SELECT count(*) FROM src"
# The same, when push datasets are declared: also the new rows' ids and time range, which
# the outbox owes them (etl.sink.outbox).
_INSERT_EVENTS_OWED = (
    f"WITH src AS ({_INSERT_STAGED} RETURNING id, occurred_at)"
    " SELECT count(*) AS n, array_agg(id) AS ids, min(occurred_at) AS lo,"
    " max(occurred_at) AS hi FROM src"
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
_QUARANTINE_ROWS = """
INSERT INTO quarantine AS q
    (event_id, fingerprint, shard_id, run_id, reason, payload, payload_text, occurrences,
     missing)
SELECT u.event_id, coalesce(u.event_id, 'md5:' || md5(u.payload)), $1, $2, u.reason, j.doc,
       CASE WHEN j.doc IS NULL THEN u.payload END, u.n, u.missing
FROM unnest($3::text[], $4::text[], $5::text[], $6::int[], $7::text[])
    AS u(event_id, reason, payload, n, missing)
CROSS JOIN LATERAL (SELECT etl_try_jsonb(u.payload) AS doc) AS j
"""
_UPSERT_TAIL = """
ON CONFLICT (fingerprint, reason)
DO UPDATE SET last_seen = now(),
              occurrences = q.occurrences + EXCLUDED.occurrences,
              shard_id = EXCLUDED.shard_id,
              run_id = EXCLUDED.run_id
"""
_UPSERT_QUARANTINE = _QUARANTINE_ROWS + _UPSERT_TAIL
# An incomplete event is quarantined only while no row of it is loaded (a resumed run may
# re-read, stripped, an event it loaded complete before); its ids are cast only here, where
# transform has already validated them as UUIDs.
_UPSERT_INCOMPLETE = (
    _QUARANTINE_ROWS
    + "WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.id = u.event_id::uuid)"
    + _UPSERT_TAIL
)
# A stripped row (see schema.STRIPPED_SQL) completed from the copy in the stage; the
# predicate repeats the partial index's so that only stripped rows are looked at.
_REPAIR_WHERE = f"""
WHERE e.id = s.id AND {_stripped("e")} AND (
    (e.session_id IS NULL AND s.session_id IS NOT NULL)
    OR (e.user_id IS NULL AND s.user_id IS NOT NULL)
    OR (e.name IS NULL AND s.name IS NOT NULL)
    OR (e.session IS NULL AND s.session IS NOT NULL)
    OR (e.properties = '{{}}'::jsonb AND s.properties <> '{{}}'::jsonb))
"""
# The repair moves the rows between rollup groups (device, browser, user, page): the rows
# before (selected with the same predicate) are subtracted, the rows after added.
_REPAIR_EVENTS = rollups.replace_rows(
    "SELECT DISTINCT ON (e.id) "
    + ", ".join(f"e.{c}" for c in rollups.RETURNED.split(", "))
    + f" FROM events AS e, {STAGE_TABLE} AS s"
    + _REPAIR_WHERE,
    """UPDATE events AS e SET
    session_id = coalesce(e.session_id, s.session_id),
    user_id = coalesce(e.user_id, s.user_id),
    name = coalesce(e.name, s.name),
    session = coalesce(e.session, s.session),
    properties = CASE WHEN e.properties = '{}'::jsonb THEN s.properties ELSE e.properties END"""
    + f"\nFROM {STAGE_TABLE} AS s"
    + _REPAIR_WHERE,
)
# A re-sync over kept rows (``Batch.overwrite``): a loaded row whose content differs from the
# source's copy in the stage takes it (timestamp_raw is not compared: the two lanes spell the
# same instant differently). A stripped copy never replaces anything. Rollups move with it.
_CONTENT = ("session_id", "user_id", "type", "name", "occurred_at", "properties", "session")
_REFRESH_WHERE = f"""
WHERE e.id = s.id AND NOT {_stripped("s")}
  AND ({", ".join(f"e.{c}" for c in _CONTENT)})
      IS DISTINCT FROM ({", ".join(f"s.{c}" for c in _CONTENT)})
"""
_REFRESH_EVENTS = rollups.replace_rows(
    "SELECT DISTINCT ON (e.id) "
    + ", ".join(f"e.{c}" for c in rollups.RETURNED.split(", "))
    + f" FROM events AS e, {STAGE_TABLE} AS s"
    + _REFRESH_WHERE,
    "UPDATE events AS e SET "
    + ", ".join(f"{c} = s.{c}" for c in (*_CONTENT, "timestamp_raw"))
    + f"\nFROM {STAGE_TABLE} AS s"
    + _REFRESH_WHERE,
)
_RESOLVE_QUARANTINE = """
UPDATE quarantine SET resolved_at = now()
WHERE event_id = ANY($1::text[]) AND missing IS NOT NULL AND resolved_at IS NULL
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
    *,
    columns: tuple[str, ...],
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
        columns=columns,
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


def _quarantine_args(items: Iterable[Quarantined]) -> tuple[list[Any], ...]:
    """Columns for the upsert (event_id, reason, payload, n, missing); repeats of one
    (event_id or payload, reason) merged (ON CONFLICT DO UPDATE cannot touch a row twice in
    one statement)."""
    rows: list[list[Any]] = []
    by_key: dict[tuple[str | None, str, str | None], list[Any]] = {}
    for q in items:
        reason = _clean(q.reason)
        payload = _clean(q.payload)
        event_id = None if q.event_id is None else _clean(q.event_id)
        key = (event_id, reason, payload if event_id is None else None)
        row = by_key.get(key)
        if row is None:
            missing = ",".join(q.missing) if q.missing else None
            row = by_key[key] = [event_id, reason, payload, 1, missing]
            rows.append(row)
        else:
            row[3] += 1
    return tuple([r[k] for r in rows] for k in range(5))


def _count(status: str) -> int:
    """The row count of a command status (``UPDATE 3``, ``INSERT 0 5``)."""
    return int(status.split()[-1])


@dataclass(slots=True)
class Repairs:
    """What a sink knows of incomplete data (kept by one sink between batches): how many
    stripped rows ``events`` holds, and the ids of quarantined incomplete events that
    still wait for a complete copy. Both only shrink the work: zero and empty cost nothing."""

    stripped: int = 0
    unresolved: set[str] = field(default_factory=set)


async def _insert_delivery(conn: Conn, d: Delivery) -> None:
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
    conn: Conn,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    *,
    table: str,
    columns: tuple[str, ...],
    direct: bool = False,
    repairs: Repairs | None = None,
) -> WriteResult:
    """Load ``batch`` and move its shard's checkpoint in one transaction on ``conn``.

    ``table`` and ``columns``: the stream's (the ``events`` shape, see the module's
    docstring). ``direct`` tries a COPY straight into ``table`` first; a batch that repeats
    an id, its own or a loaded one, then falls back to the staged upsert, so the result is
    the same either way. ``repairs`` (updated after the commit) completes stripped rows from the
    batch's copies and resolves quarantined incomplete events the batch loads. Raises
    ``SinkError`` if the shard has no progress row, and whatever the database raises (a
    deadlock included); either way nothing of the batch is committed."""
    repairs = repairs if repairs is not None else Repairs()
    result: WriteResult | None = None
    into = _Into(table, columns)
    if direct and batch.records:
        try:
            result = await _write(conn, batch, run_id, provider, sent_at, t0, into, True, repairs)
        except asyncpg.UniqueViolationError as exc:
            if not _is_table(exc.table_name, table):
                raise
    if result is None:
        result = await _write(conn, batch, run_id, provider, sent_at, t0, into, False, repairs)
    repairs.stripped = max(0, repairs.stripped - result.repaired)
    if result.resolved:
        repairs.unresolved.difference_update(r[0] for r in batch.records)
    repairs.unresolved.update(q.event_id for q in batch.quarantined if q.missing and q.event_id)
    return result


@dataclass(frozen=True, slots=True)
class _Into:
    """Where a batch's COPY goes: the stream's table and column list."""

    table: str
    columns: tuple[str, ...]


def _is_table(reported: str | None, table: str) -> bool:
    """``table`` or one of its pieces: a hash partition (``events_p0``), or a Citus shard
    (``events_102008``), which is where a violation is reported (docs/citus.md)."""
    return reported is not None and (reported == table or reported.startswith(table + "_"))


async def _replace_rows(conn: Conn, sql: str) -> int:
    """Run a ``rollups.replace_rows`` statement; drop the rollup rows it emptied."""
    replaced = int(await conn.fetchval(sql))
    if replaced:
        for empty in rollups.DROP_EMPTY:
            await conn.execute(empty)
    return replaced


async def _owe_all(conn: Conn, batch: Batch) -> None:
    """Owe every record of ``batch`` to the declared push datasets (a direct COPY: all are
    new; or some loaded rows changed in place)."""
    records = batch.records
    lo, hi = min(r[5] for r in records), max(r[5] for r in records)
    await outbox.enqueue(conn, [r[0] for r in records], lo, hi)


async def _insert_staged(conn: Conn, *, owe: bool) -> int:
    """Insert the stage's new rows (rollups kept); with ``owe``, the rows that were new
    (only those) are owed to the declared push datasets. Returns how many were new."""
    if not owe:
        return int(await conn.fetchval(_INSERT_EVENTS))
    new = await conn.fetchrow(_INSERT_EVENTS_OWED)
    assert new is not None
    if new["n"]:
        await outbox.enqueue(conn, list(new["ids"]), new["lo"], new["hi"])
    return int(new["n"])


async def _write(
    conn: Conn,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    into: _Into,
    direct: bool,
    repairs: Repairs,
) -> WriteResult:
    cp = batch.checkpoint
    n_records = len(batch.records)
    async with conn.transaction():
        inserted = repaired = resolved = refreshed = 0
        pushing = n_records > 0 and await outbox.declared(conn)
        if direct:
            await conn.copy_records_to_table(
                into.table, records=batch.records, columns=into.columns
            )
            inserted = n_records
            if pushing:
                await _owe_all(conn, batch)
        elif n_records:
            await conn.copy_records_to_table(
                STAGE_TABLE, records=batch.records, columns=into.columns
            )
            if repairs.stripped:
                repaired = await _replace_rows(conn, _REPAIR_EVENTS)
            if batch.overwrite:
                refreshed = await _replace_rows(conn, _REFRESH_EVENTS)
            # rows repaired or refreshed in place changed: owe the whole batch again (a
            # re-sent row overwrites its key), else only the rows that were new
            changed = pushing and (repaired or refreshed) > 0
            inserted = await _insert_staged(conn, owe=pushing and not changed)
            if changed:
                await _owe_all(conn, batch)
        if repairs.unresolved and n_records:
            waiting = [r[0] for r in batch.records if r[0] in repairs.unresolved]
            if waiting:
                resolved = _count(await conn.execute(_RESOLVE_QUARANTINE, waiting))
        regular = [q for q in batch.quarantined if not q.missing]
        incomplete = [q for q in batch.quarantined if q.missing]
        n_quarantined = len(regular)
        if regular:
            await conn.execute(_UPSERT_QUARANTINE, cp.shard_id, run_id, *_quarantine_args(regular))
        already = 0  # incomplete copies of events loaded complete: duplicates, not held
        if incomplete:
            args = _quarantine_args(incomplete)
            stored = _count(await conn.execute(_UPSERT_INCOMPLETE, cp.shard_id, run_id, *args))
            already = len(args[0]) - stored  # exact unless one event came twice, incomplete
            n_quarantined += len(incomplete) - already
        duplicates = n_records - inserted + already
        updated: str = await conn.execute(
            _UPDATE_PROGRESS,
            cp.shard_id,
            cp.position.ts_ms if cp.position else None,
            cp.position.id if cp.position else None,
            cp.cursor,
            "done" if cp.done else "running",
            inserted,
            duplicates,
            n_quarantined - resolved,
            cp.pages,
        )
        if updated != "UPDATE 1":
            raise SinkError(f"shard {cp.shard_id!r} has no progress row (add_shards() it first)")
        result = WriteResult(
            inserted=inserted,
            duplicates=duplicates,
            quarantined=n_quarantined,
            repaired=repaired,
            resolved=resolved,
            refreshed=refreshed,
            loaded_by="copy" if direct else "upsert",
        )
        delivery = make_delivery(
            batch, run_id, provider, sent_at, t0, result, None, columns=into.columns
        )
        await _insert_delivery(conn, delivery)
    return result


async def log_failure(
    conn: Conn,
    batch: Batch,
    run_id: int | None,
    provider: str,
    sent_at: dt.datetime,
    t0: float,
    message: str,
    *,
    columns: tuple[str, ...],
) -> None:
    """Record ``batch`` as failed with ``message`` (already scrubbed) in ``delivery_log``."""
    delivery = make_delivery(batch, run_id, provider, sent_at, t0, None, message, columns=columns)
    await _insert_delivery(conn, delivery)
