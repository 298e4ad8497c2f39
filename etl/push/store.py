"""The push side's SQL: declaring datasets, reading the outbox, recording what was accepted.

The pusher holds one connection and the push lock (a session advisory lock: one drainer per
database). Acceptance is recorded in one transaction per chunk: the outbox rows' progress
(``sent`` moves on, or the row goes), the ingestion to verify and the delivery row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from etl.errors import ConfigError
from etl.pg import Conn
from etl.push import log
from etl.push.datasets import DatasetSpec

PUSH_LOCK_KEY = 0x65746C02  # 'etl' + 2, beside the ingest and migration locks
BACKFILL_ROWS = 10_000  # events per backfilled outbox row

_BACKFILL_EVENTS = f"""
INSERT INTO push_outbox (dataset, event_ids, lo, hi)
SELECT $1, array_agg(id ORDER BY id), min(occurred_at), max(occurred_at)
FROM (SELECT id, occurred_at, (row_number() OVER (ORDER BY id) - 1) / {BACKFILL_ROWS} AS g
      FROM events) AS e
GROUP BY g ORDER BY g
"""
_BACKFILL_AGGREGATE = """
INSERT INTO push_outbox (dataset, event_ids, lo, hi)
SELECT $1, '{}', min(occurred_at), max(occurred_at) FROM events HAVING count(*) > 0
"""
_MARK = """
WITH p AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[]) AS p(id, start, upto)),
gone AS (
    DELETE FROM push_outbox o USING p
    WHERE o.id = p.id AND o.sent = p.start AND p.upto >= cardinality(o.event_ids)
    RETURNING o.id
)
UPDATE push_outbox o SET sent = p.upto FROM p
WHERE o.id = p.id AND o.sent = p.start AND p.upto < cardinality(o.event_ids)
"""


@dataclass(frozen=True, slots=True)
class Declared:
    name: str
    destination: str
    kind: str
    remote_id: str | None


@dataclass(frozen=True, slots=True)
class Part:
    """``upto - start`` events of outbox row ``outbox_id`` (``sent`` was ``start``)."""

    outbox_id: int
    start: int
    upto: int


@dataclass(frozen=True, slots=True)
class Accepted:
    dataset: str
    ingestion_id: str
    request_id: str | None
    keys: list[str]


async def try_lock(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", PUSH_LOCK_KEY))


async def declare(conn: Conn, specs: list[DatasetSpec], destination: str) -> list[str]:
    """Declare ``specs`` for ``destination`` (those not declared yet) and owe each one every
    event already loaded; returns the names newly declared.

    ACCESS EXCLUSIVE on ``push_datasets`` waits for every load transaction that read it and
    holds new ones back until commit (see ``etl.sink.outbox``): no event is owed twice or
    missed."""
    new: list[str] = []
    async with conn.transaction():
        await conn.execute("LOCK TABLE push_datasets IN ACCESS EXCLUSIVE MODE")
        existing = {
            r["name"]: r["destination"]
            for r in await conn.fetch("SELECT name, destination FROM push_datasets")
        }
        for spec in specs:
            if spec.name in existing:
                if existing[spec.name] != destination:
                    raise ConfigError(
                        f"dataset {spec.name!r} is declared for {existing[spec.name]}, "
                        f"not {destination}"
                    )
                continue
            await conn.execute(
                "INSERT INTO push_datasets (name, destination, kind) VALUES ($1, $2, $3)",
                spec.name,
                destination,
                spec.kind,
            )
            sql = _BACKFILL_EVENTS if spec.kind == "events" else _BACKFILL_AGGREGATE
            await conn.execute(sql, spec.name)
            new.append(spec.name)
    return new


async def declared(conn: Conn) -> list[Declared]:
    rows = await conn.fetch(
        "SELECT name, destination, kind, remote_id FROM push_datasets ORDER BY declared_at, name"
    )
    return [Declared(r["name"], r["destination"], r["kind"], r["remote_id"]) for r in rows]


async def set_remote_id(conn: Conn, name: str, remote_id: str | None) -> None:
    await conn.execute("UPDATE push_datasets SET remote_id = $2 WHERE name = $1", name, remote_id)


async def pending(conn: Conn) -> dict[str, tuple[int, int]]:
    """Per dataset: (outbox rows, events still owed to raw datasets)."""
    rows = await conn.fetch(
        "SELECT dataset, count(*) AS n, coalesce(sum(cardinality(event_ids) - sent), 0) AS owed"
        " FROM push_outbox GROUP BY dataset"
    )
    return {r["dataset"]: (int(r["n"]), int(r["owed"])) for r in rows}


async def raw_rows(conn: Conn, dataset: str, after: int, limit: int) -> list[Any]:
    """Pending outbox rows of a raw dataset after id ``after``: (id, sent, n, ids not sent)."""
    return list(
        await conn.fetch(
            "SELECT id, sent, cardinality(event_ids) AS n, event_ids[sent + 1:] AS ids"
            " FROM push_outbox WHERE dataset = $1 AND id > $2 ORDER BY id LIMIT $3",
            dataset,
            after,
            limit,
        )
    )


async def aggregate_rows(conn: Conn, dataset: str, limit: int) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT id, lo, hi FROM push_outbox WHERE dataset = $1 ORDER BY id LIMIT $2",
            dataset,
            limit,
        )
    )


async def records(conn: Conn, spec: DatasetSpec, *args: Any) -> list[dict[str, Any]]:
    """The dataset's records: for the given event ids (raw) or [lo, hi) (aggregates)."""
    names = spec.column_names
    return [dict(zip(names, row, strict=True)) for row in await conn.fetch(spec.sql, *args)]


async def accept(
    conn: Conn, parts: list[Part], accepted: Accepted, delivery: log.PushDelivery
) -> None:
    """One transaction: the parts are delivered, the ingestion awaits verification, the
    request is logged."""
    async with conn.transaction():
        await mark(conn, parts)
        await conn.execute(
            "INSERT INTO push_ingestions (ingestion_id, dataset, request_id, keys)"
            " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (ingestion_id) DO NOTHING",
            accepted.ingestion_id,
            accepted.dataset,
            accepted.request_id,
            json.dumps(accepted.keys),
        )
        await log.insert(conn, delivery)


async def mark(conn: Conn, parts: list[Part]) -> None:
    """The parts' events are delivered: ``sent`` moves on; a row fully sent goes."""
    if parts:
        await conn.execute(
            _MARK, [p.outbox_id for p in parts], [p.start for p in parts], [p.upto for p in parts]
        )


async def finish_rows(conn: Conn, outbox_ids: list[int]) -> None:
    """Aggregates: every bucket these rows owed was accepted."""
    await conn.execute("DELETE FROM push_outbox WHERE id = ANY($1::bigint[])", outbox_ids)


async def open_ingestions(conn: Conn, dataset: str) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT ingestion_id, keys FROM push_ingestions WHERE dataset = $1 AND status = 'accepted'"
        " ORDER BY accepted_at",
        dataset,
    )
    return {r["ingestion_id"]: json.loads(r["keys"]) for r in rows}


@dataclass(frozen=True, slots=True)
class Reject:
    record_key: str | None
    code: str | None
    message: str
    field: str | None


async def rejects(
    conn: Conn, dataset: str, items: list[Reject], ingestion_id: str | None, request_id: str | None
) -> None:
    if items:
        await conn.executemany(
            "INSERT INTO push_rejects (dataset, record_key, code, message, field, ingestion_id,"
            " request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (dataset, r.record_key, r.code, r.message, r.field, ingestion_id, request_id)
                for r in items
            ],
        )


async def verified(
    conn: Conn,
    dataset: str,
    ingestion_id: str,
    counts: tuple[int, int, int, int],
    items: list[Reject],
) -> None:
    """Record an ingestion's counts (received, appended, rejected, overwritten) and its
    rejected records, and complete its delivery row."""
    received, appended, rejected, overwritten = counts
    async with conn.transaction():  # a savepoint inside the round's transaction
        await conn.execute(
            "UPDATE push_ingestions SET status = 'verified', received = $2, appended = $3,"
            " rejected = $4, overwritten = $5, verified_at = $6 WHERE ingestion_id = $1",
            ingestion_id,
            received,
            appended,
            rejected,
            overwritten,
            dt.datetime.now(dt.UTC),
        )
        await rejects(conn, dataset, items, ingestion_id, None)
        await log.set_counts(conn, ingestion_id, appended + overwritten, rejected)
