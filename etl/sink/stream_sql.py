"""The SQL of ``etl.sink.stream_sink``: a ``Stream``'s table made from its declaration, the
insert of a batch's rows, the checkpoint and counter updates, shards read back."""

from __future__ import annotations

from typing import Any

from etl.models import Position, ShardState, Stream
from etl.sink.streams import PG_TYPES, column_defs
from etl.sink.streams import quote_ident as _q

SHARD_COLS = "shard_id, lower_ts, upper_ts, position_ts, position_id, cursor, status, events, pages"
QUARANTINE = """
INSERT INTO stream_quarantine AS q (source, stream, fingerprint, reason, payload)
SELECT $1, $2, u.f, u.r, u.p FROM unnest($3::text[], $4::text[], $5::text[]) AS u(f, r, p)
ON CONFLICT (source, stream, fingerprint, reason)
DO UPDATE SET last_seen = now(), occurrences = q.occurrences + 1
"""
CHECKPOINT = """
UPDATE stream_shards SET position_ts = coalesce($4, position_ts),
    position_id = coalesce($5, position_id), cursor = $6, status = $7,
    events = events + $8, pages = pages + $9, updated_at = now()
WHERE source = $1 AND stream = $2 AND shard_id = $3
"""
COUNTERS = """
UPDATE stream_state SET rows_written = rows_written + $3, quarantined = quarantined + $4,
    pages = pages + $5, cursor_value = coalesce($6, cursor_value), next_request = $7::jsonb,
    updated_at = now()
WHERE source = $1 AND stream = $2
"""


def table_ddl(stream: Stream) -> str:
    cols = column_defs(stream.columns, stream.primary_key)
    pk = ", ".join(_q(k) for k in stream.primary_key)
    table = _q(stream.table_name)
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)}, PRIMARY KEY ({pk}))"


def insert_sql(stream: Stream) -> str:
    """Rows as one array per column -> the table; keys already there are left alone."""
    names = ", ".join(_q(c.name) for c in stream.columns)
    arrays = ", ".join(
        f"${i + 1}::{'text' if c.type == 'json' else PG_TYPES[c.type]}[]"
        for i, c in enumerate(stream.columns)
    )
    select = ", ".join(
        f"u.{_q(c.name)}::jsonb" if c.type == "json" else f"u.{_q(c.name)}" for c in stream.columns
    )
    pk = ", ".join(_q(k) for k in stream.primary_key)
    return (
        f"INSERT INTO {_q(stream.table_name)} ({names}) SELECT {select}"
        f" FROM unnest({arrays}) AS u({names}) ON CONFLICT ({pk}) DO NOTHING"
    )


def shard_from(row: Any) -> ShardState:
    position = None
    if row["position_ts"] is not None:
        position = Position(row["position_ts"], row["position_id"] or "")
    return ShardState(
        row["shard_id"],
        row["lower_ts"],
        row["upper_ts"],
        position,
        row["cursor"],
        row["status"],
        row["events"],
        row["pages"],
    )
