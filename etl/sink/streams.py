"""A declarative source's tables in PostgreSQL: the DDL, the upsert, and ``StreamStore``
(the source's lock and the tables made before its streams run).

Each stream has its own table (its declared columns, its primary key) and one row in
``stream_state`` (its status, counters, mark and next request: its progress); time-range
streams of Python sources keep their shards in ``stream_shards``; rejects go to
``stream_quarantine``. Rows are upserted on the primary key, and a row only replaces one
whose cursor value is not newer (the latest ``updated_at`` wins). The writing is
``etl.sink.stream_sink``'s, one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from etl.errors import LockHeld, SinkError
from etl.rest.records import Row
from etl.rest.spec import StreamSpec
from etl.sink.dsn import redact_dsn, scrub

PG_TYPES = {
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "number": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "json": "jsonb",
    "uuid": "uuid",
}

DDL = """
CREATE TABLE IF NOT EXISTS stream_state (
    source       text        NOT NULL,
    stream       text        NOT NULL,
    table_name   text        NOT NULL,
    cursor_value text        NULL,
    next_request jsonb       NULL,
    status       text        NOT NULL DEFAULT 'new',
    rows_written bigint      NOT NULL DEFAULT 0,
    quarantined  bigint      NOT NULL DEFAULT 0,
    pages        bigint      NOT NULL DEFAULT 0,
    last_error   text        NULL,
    started_at   timestamptz NULL,
    finished_at  timestamptz NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream)
);
CREATE TABLE IF NOT EXISTS stream_shards (
    source      text        NOT NULL,
    stream      text        NOT NULL,
    shard_id    text        NOT NULL,
    lower_ts    bigint      NULL,
    upper_ts    bigint      NULL,
    position_ts bigint      NULL,
    position_id text        NULL,
    cursor      text        NULL,
    status      text        NOT NULL DEFAULT 'pending',
    events      bigint      NOT NULL DEFAULT 0,
    pages       bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream, shard_id)
);
CREATE TABLE IF NOT EXISTS stream_quarantine (
    source      text        NOT NULL,
    stream      text        NOT NULL,
    fingerprint text        NOT NULL,
    reason      text        NOT NULL,
    payload     text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    occurrences bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (source, stream, fingerprint, reason)
);
"""

_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


quote_ident = _q


def column_defs(columns: Sequence[Any], primary_key: Sequence[str]) -> list[str]:
    """A stream table's column definitions (a key column is NOT NULL), then the load time:
    the one shape of every stream's table, declarative or a pipeline stream."""
    cols = [
        f"{_q(c.name)} {PG_TYPES[c.type]}"
        + (" NOT NULL" if c.name in primary_key or not c.nullable else "")
        for c in columns
    ]
    cols.append("_etl_loaded_at timestamptz NOT NULL DEFAULT now()")
    return cols


def table_ddl(stream: StreamSpec) -> str:
    cols = column_defs(stream.columns, stream.primary_key)
    pk = ", ".join(_q(k) for k in stream.primary_key)
    adds = "".join(
        f"ALTER TABLE {_q(stream.table)} ADD COLUMN IF NOT EXISTS {_q(c.name)} "
        f"{PG_TYPES[c.type]};\n"
        for c in stream.columns
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {_q(stream.table)} (\n    "
        + ",\n    ".join(cols)
        + f",\n    PRIMARY KEY ({pk})\n);\n"
        + adds
    )


def upsert_sql(stream: StreamSpec) -> str:
    """INSERT ... SELECT FROM unnest(arrays) ... ON CONFLICT (pk) DO UPDATE when not older."""
    names = [c.name for c in stream.columns]
    arrays = ", ".join(
        f"${i + 1}::{'text' if c.type == 'json' else PG_TYPES[c.type]}[]"
        for i, c in enumerate(stream.columns)
    )
    select = ", ".join(
        f"u.{_q(c.name)}::jsonb" if c.type == "json" else f"u.{_q(c.name)}" for c in stream.columns
    )
    pk = ", ".join(_q(k) for k in stream.primary_key)
    updates = ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in names if n not in stream.primary_key)
    updates = (updates + ", " if updates else "") + "_etl_loaded_at = now()"
    newer = ""
    if stream.incremental is not None:
        cur = _q(stream.incremental.cursor_field)
        newer = f" WHERE t.{cur} IS NULL OR t.{cur} <= excluded.{cur}"
    return (
        f"INSERT INTO {_q(stream.table)} AS t ({', '.join(_q(n) for n in names)}) "
        f"SELECT {select} FROM unnest({arrays}) AS u({', '.join(_q(n) for n in names)}) "
        f"ON CONFLICT ({pk}) DO UPDATE SET {updates}{newer} RETURNING (xmax = 0) AS inserted"
    )


class StreamStore:
    def __init__(self, dsn: str, source: str, *, writers: int = 1) -> None:
        """``writers``: streams writing at once (one pooled connection each, and one more)."""
        self._dsn = dsn
        self._writers = max(1, writers)
        self.source = source
        self._pool: asyncpg.Pool | None = None
        self._lock_conn: asyncpg.Connection | None = None
        self._upserts: dict[str, str] = {}

    def _fail(self, what: str, exc: BaseException) -> SinkError:
        return SinkError(f"{what} ({redact_dsn(self._dsn)}): {scrub(str(exc), self._dsn)}")

    async def open(self, streams: Sequence[StreamSpec]) -> None:
        """Connect, take the source's lock (exit 7 when held), create what is missing."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._writers + 1
            )
            self._lock_conn = await asyncpg.connect(self._dsn)
            got = await self._lock_conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext('etl-source:' || $1))", self.source
            )
        except _ERRORS as exc:
            await self.close()
            raise self._fail("cannot open the database", exc) from exc
        if not got:
            await self.close()
            raise LockHeld(f"another `etl sync {self.source}` is running against this database")
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(DDL)
                for s in streams:
                    await conn.execute(table_ddl(s))
                    await conn.execute(
                        "INSERT INTO stream_state (source, stream, table_name)"
                        " VALUES ($1, $2, $3) ON CONFLICT (source, stream)"
                        " DO UPDATE SET table_name = excluded.table_name",
                        self.source,
                        s.name,
                        s.table,
                    )
        except _ERRORS as exc:
            await self.close()
            raise self._fail("cannot create the stream tables", exc) from exc

    async def close(self) -> None:
        if self._lock_conn is not None:
            await self._lock_conn.close()
            self._lock_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("StreamStore used before open()")
        return self._pool


def dedupe(stream: StreamSpec, rows: Sequence[Row]) -> list[Row]:
    """One row per primary key within a page (the one with the newest cursor value)."""
    keys = [i for i, c in enumerate(stream.columns) if c.name in stream.primary_key]
    cur = None
    if stream.incremental is not None:
        cur = next(
            i for i, c in enumerate(stream.columns) if c.name == stream.incremental.cursor_field
        )
    best: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[i] for i in keys)
        old = best.get(key)
        if old is None or cur is None or _not_older(row[cur], old[cur]):
            best[key] = row
    return list(best.values())


def _not_older(new: Any, old: Any) -> bool:
    return old is None or (new is not None and old <= new)
