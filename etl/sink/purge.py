"""`etl purge`: delete events by user, type and/or time range, rollups kept exact.

``purge`` runs one transaction: the ``DELETE ... RETURNING`` subtracts what it removed from
every rollup (``etl.sink.rollups.delete_returning``), empty rollup rows go, and a row in
``purges`` records what was asked and how many went. Unless ``allow_reload``, that row
*blocks* the events it describes: every later ``PostgresSink`` loads the blocking rules when
it opens and drops matching events from its batches before writing (``drop_purged``), so an
incremental run's overlap, a resumed shard or a full re-sync does not quietly bring purged
events back. (A load already running when the purge commits still has the old rules.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etl.errors import ConfigError
from etl.models import Batch, Record
from etl.pg import Conn
from etl.sink import rollups


@dataclass(frozen=True, slots=True)
class PurgeFilter:
    """Which events: all conditions given must hold; ``since`` inclusive, ``until`` not."""

    user_id: str | None = None
    type: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.user_id is None and self.type is None and self.since is None and self.until is None:
            raise ConfigError("purge needs at least one of --user, --type, --since, --until")

    def where(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        for column, op, value in (
            ("user_id", "=", self.user_id),
            ("type", "=", self.type),
            ("occurred_at", ">=", self.since),
            ("occurred_at", "<", self.until),
        ):
            if value is not None:
                args.append(value)
                cast = "::uuid" if column == "user_id" else ""
                # a user's rows: a range of events_user_time_idx (user_id, occurred_at, id)
                parts.append(f"{column} {op} ${len(args)}{cast}")
        return " AND ".join(parts), args

    def matches(self, r: Record) -> bool:
        return (
            (self.user_id is None or r[2] == self.user_id)
            and (self.type is None or r[3] == self.type)
            and (self.since is None or r[5] >= self.since)
            and (self.until is None or r[5] < self.until)
        )


@dataclass(frozen=True, slots=True)
class PurgeResult:
    matched: int  # events the filter selects (before deleting)
    deleted: int  # 0 on a dry run
    dry_run: bool
    blocks_reload: bool
    purge_id: int | None  # the ``purges`` row (None on a dry run)


async def count(conn: Conn, f: PurgeFilter) -> int:
    where, args = f.where()
    return int(await conn.fetchval(f"SELECT count(*) FROM events WHERE {where}", *args))


async def purge(conn: Conn, f: PurgeFilter, *, dry_run: bool, allow_reload: bool) -> PurgeResult:
    """Delete what ``f`` selects (or only count it when ``dry_run``), in one transaction."""
    if dry_run:
        n = await count(conn, f)
        return PurgeResult(n, 0, True, not allow_reload, None)
    where, args = f.where()
    async with conn.transaction():
        deleted = int(await conn.fetchval(rollups.delete_returning(where), *args))
        for sql in rollups.DROP_EMPTY:
            await conn.execute(sql)
        purge_id = await conn.fetchval(
            "INSERT INTO purges (user_id, type, since, until, deleted, block_reload)"
            " VALUES ($1::uuid, $2, $3, $4, $5, $6) RETURNING purge_id",
            f.user_id,
            f.type,
            f.since,
            f.until,
            deleted,
            not allow_reload,
        )
    return PurgeResult(deleted, deleted, False, not allow_reload, int(purge_id))


async def load_rules(conn: Conn) -> tuple[PurgeFilter, ...]:
    """The purges that block a reload (read by the sink when it opens)."""
    rows = await conn.fetch(
        "SELECT user_id::text AS u, type, since, until FROM purges WHERE block_reload"
    )
    return tuple(PurgeFilter(r["u"], r["type"], r["since"], r["until"]) for r in rows)


def drop_purged(batch: Batch, rules: Sequence[PurgeFilter]) -> Batch:
    """``batch`` without the events a blocking purge removed."""
    kept = [r for r in batch.records if not any(rule.matches(r) for rule in rules)]
    if len(kept) == len(batch.records):
        return batch
    return dataclasses.replace(batch, records=kept)
