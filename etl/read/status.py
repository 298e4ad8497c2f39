"""The progress snapshot of `etl status` and `etl health`, read in one consistent transaction.

Every query touches small tables only (``ingest_progress``, the ``ingest_totals`` view over it,
``posted_totals``, ``ingest_runs``, the tail of one run's ``delivery_log``): never a COUNT(*)
over ``events``, so the answer takes milliseconds however large the table is. The value and
its JSON form are in ``etl.read.views``.
"""

from __future__ import annotations

import datetime as dt

from etl.pg import Conn
from etl.read.budget import read_budgets
from etl.read.db import run_query
from etl.read.runs import RUN_COLS, run_from_row
from etl.read.views import RATE_WINDOW_S, ShardRow, StatusSnapshot, StreamRow

_SHARDS_SQL = (
    "SELECT shard_id, status, events, position_ts, lower_ts, updated_at, heartbeat_at"
    " FROM ingest_progress ORDER BY created_at, shard_id"
)
_STREAMS_SQL = (
    "SELECT source, stream, table_name, status, rows_written, quarantined, pages,"
    " cursor_value, started_at, finished_at, updated_at, last_error"
    " FROM stream_state ORDER BY source, stream"
)
_RUN_SQL = (
    f"SELECT {RUN_COLS} FROM ingest_runs ORDER BY status = 'running' DESC, run_id DESC LIMIT 1"
)
# The newest finished run that loaded events: its rate is the real one after no-op runs.
_LAST_LOAD_SQL = (
    f"SELECT {RUN_COLS} FROM ingest_runs WHERE inserted > 0 AND status <> 'running'"
    " ORDER BY run_id DESC LIMIT 1"
)
# The newest deliveries of one run (index on (run_id, id)), summed over the recent window.
_RECENT_SQL = """
SELECT coalesce(sum(rows_written), 0)::bigint FROM (
    SELECT rows_written, sent_at FROM delivery_log WHERE run_id = $1 ORDER BY id DESC LIMIT 1000
) AS d WHERE sent_at >= $2
"""


def _ts_ms_to_utc(ts_ms: int | None) -> dt.datetime | None:
    return None if ts_ms is None else dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


async def _read_status(conn: Conn) -> StatusSnapshot:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        head = await conn.fetchrow(
            "SELECT now() AS now, to_regclass('ingest_runs') IS NOT NULL"
            " AND to_regclass('ingest_totals') IS NOT NULL AS ready,"
            " to_regclass('stream_state') IS NOT NULL AS streams,"
            " to_regclass('posted_totals') IS NOT NULL AS posted"
        )
        assert head is not None  # a SELECT without FROM returns one row
        streams = await _read_streams(conn) if head["streams"] else ()
        if not head["ready"]:
            return StatusSnapshot(taken_at=head["now"], initialized=False, streams=streams)
        totals = await conn.fetchrow("SELECT events, duplicates, quarantined FROM ingest_totals")
        assert totals is not None  # an aggregate view: one row
        posted = 0
        if head["posted"]:  # events recorded by `etl serve`'s POST /events (no shard)
            posted = int(await conn.fetchval("SELECT coalesce(sum(events), 0) FROM posted_totals"))
        shards = tuple(
            ShardRow(
                shard_id=r["shard_id"],
                status=r["status"],
                events=int(r["events"]),
                position=_ts_ms_to_utc(r["position_ts"]),
                updated_at=r["updated_at"],
                heartbeat_at=r["heartbeat_at"],
                lower=_ts_ms_to_utc(r["lower_ts"]),
            )
            for r in await conn.fetch(_SHARDS_SQL)
        )
        row = await conn.fetchrow(_RUN_SQL)
        run = run_from_row(row) if row else None
        last_load = None
        if run is not None and run.status != "running" and run.inserted == 0:
            found = await conn.fetchrow(_LAST_LOAD_SQL)
            last_load = run_from_row(found) if found else None
        rate_now = None
        if run is not None and run.status == "running":
            since = head["now"] - dt.timedelta(seconds=RATE_WINDOW_S)
            window = min(RATE_WINDOW_S, (head["now"] - run.started_at).total_seconds())
            recent = await conn.fetchval(_RECENT_SQL, run.run_id, since)
            rate_now = recent / window if window > 0 else None
        budgets = await read_budgets(conn)
    return StatusSnapshot(
        taken_at=head["now"],
        initialized=True,
        loaded=int(totals["events"]) + posted,
        posted=posted,
        duplicates=int(totals["duplicates"]),
        quarantined=int(totals["quarantined"]),
        shards=shards,
        run=run,
        rate_now_per_s=rate_now,
        last_load=last_load,
        streams=streams,
        budgets=budgets,
    )


async def _read_streams(conn: Conn) -> tuple[StreamRow, ...]:
    """Every declared stream's progress row (one small table, one row per stream)."""
    return tuple(
        StreamRow(
            source=r["source"],
            stream=r["stream"],
            table=r["table_name"],
            status=r["status"],
            rows=int(r["rows_written"]),
            quarantined=int(r["quarantined"]),
            pages=int(r["pages"]),
            cursor=r["cursor_value"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            updated_at=r["updated_at"],
            error=r["last_error"],
        )
        for r in await conn.fetch(_STREAMS_SQL)
    )


async def read_status(target: Conn | str) -> StatusSnapshot:
    """A consistent snapshot of the progress of the current (or last) run. Raises SinkError."""
    return await run_query(target, "reading the status", _read_status)


async def _streams_if_any(conn: Conn) -> tuple[StreamRow, ...]:
    if not await conn.fetchval("SELECT to_regclass('stream_state') IS NOT NULL"):
        return ()
    return await _read_streams(conn)


async def read_streams(target: Conn | str) -> tuple[StreamRow, ...]:
    """Every declarative stream's progress and last sync (empty if none). Raises SinkError."""
    return await run_query(target, "reading the streams", _streams_if_any)
