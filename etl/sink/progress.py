"""The ``ingest_progress`` table: one row per shard with its bounds, checkpoint and counters.

Rows retired by ``replace_shard``, ``reset_shards`` or ``reset_progress`` (``etl reset``,
``etl ingest --full-refresh``) move to ``ingest_progress_archive``, where their counters
still count in ``ingest_totals`` (the rows they loaded stay in ``events``). A batch's own
progress update is part of its write transaction (``etl.sink.batch``).
"""

from __future__ import annotations

from typing import Any

from etl.errors import SinkError
from etl.models import Position, ShardState, ShardStatus
from etl.pg import Conn

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


async def load_shards(conn: Conn) -> list[ShardState]:
    """Every live shard, oldest first. Raises ``SinkError`` on a row with an unknown status."""
    rows = await conn.fetch(
        f"SELECT {_SHARD_COLS} FROM ingest_progress ORDER BY created_at, shard_id"
    )
    return [_shard_from_row(r) for r in rows]


async def add_shards(conn: Conn, shards: list[ShardState]) -> None:
    """Insert progress rows for new shards; existing shard ids are left untouched."""
    await conn.executemany(_INSERT_SHARD, [_shard_args(s) for s in shards])


async def touch_shards(conn: Conn, shard_ids: list[str]) -> None:
    """Refresh the heartbeat of the shards ``shard_ids`` (being fetched by a live run)."""
    await conn.execute(
        "UPDATE ingest_progress SET heartbeat_at = now() WHERE shard_id = ANY($1::text[])",
        shard_ids,
    )


async def replace_shard(conn: Conn, old_id: str, new_shards: list[ShardState]) -> bool:
    """Atomically retire shard ``old_id`` (to the archive: its counters still count in
    ``ingest_totals``) and add ``new_shards`` (e.g. a split of its remaining range; a new
    shard may reuse ``old_id``). Returns False, changing nothing, if ``old_id`` does not
    exist or is already done."""
    async with conn.transaction():
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


async def split_shard(conn: Conn, shard: ShardState, new: ShardState) -> bool:
    """Hand the older part of a live shard to ``new``: in one transaction the shard's
    ``lower_ts`` becomes ``new.upper_ts`` and ``new``'s row is added. False, changing
    nothing, if the shard is gone or done."""
    async with conn.transaction():
        updated = await conn.execute(
            "UPDATE ingest_progress SET lower_ts = $2, updated_at = now()"
            " WHERE shard_id = $1 AND status <> 'done'",
            shard.shard_id,
            new.upper_ts,
        )
        if updated != "UPDATE 1":
            return False
        await conn.execute(_INSERT_SHARD, *_shard_args(new))
        return True


async def reset_progress(conn: Conn) -> int:
    """Retire every progress row to the archive (counters kept for totals) in one
    transaction; never touches ``events``. Returns the number of shards retired."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE ingest_progress IN EXCLUSIVE MODE")
        await conn.execute(
            f"INSERT INTO ingest_progress_archive ({_ARCHIVE_COLS}) "
            f"SELECT {_ARCHIVE_COLS} FROM ingest_progress"
        )
        status: str = await conn.execute("DELETE FROM ingest_progress")
        return int(status.split()[-1])


async def reset_shards(conn: Conn, shard_ids: list[str]) -> list[str]:
    """Start the shards ``shard_ids`` over: each is retired to the archive (its counters still
    count) and comes back pending with the same bounds, to be re-read whole. In one
    transaction; returns the ids that do not exist (then nothing changes)."""
    async with conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_SHARD_COLS} FROM ingest_progress WHERE shard_id = ANY($1::text[])"
            " FOR UPDATE",
            shard_ids,
        )
        found = {r["shard_id"] for r in rows}
        missing = [i for i in shard_ids if i not in found]
        if missing:
            return missing
        await conn.execute(
            f"INSERT INTO ingest_progress_archive ({_ARCHIVE_COLS}) "
            f"SELECT {_ARCHIVE_COLS} FROM ingest_progress WHERE shard_id = ANY($1::text[])",
            shard_ids,
        )
        await conn.execute(
            "DELETE FROM ingest_progress WHERE shard_id = ANY($1::text[])", shard_ids
        )
        fresh = [ShardState(r["shard_id"], r["lower_ts"], r["upper_ts"]) for r in rows]
        await conn.executemany(_INSERT_SHARD, [_shard_args(s) for s in fresh])
        return []


async def drop_everything(conn: Conn) -> int:
    """Delete every loaded event, the quarantine and all sync state (progress, archive, the
    source identity) in one transaction; the run history and delivery log stay. Returns the
    number of events the counters said were loaded."""
    async with conn.transaction():
        loaded = await conn.fetchval(
            "SELECT (SELECT events FROM ingest_totals)"
            " + coalesce((SELECT events FROM posted_totals), 0)"
        )
        await conn.execute(
            "TRUNCATE events, quarantine, ingest_progress, ingest_progress_archive, ingest_source,"
            " posted_totals"
        )
        return int(loaded or 0)
