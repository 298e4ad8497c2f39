"""The run history (``ingest_runs``), newest first: `etl runs`, and the run in `etl status`."""

from __future__ import annotations

import json

import asyncpg

from etl.pg import Conn
from etl.read.db import run_query
from etl.read.views import RunRow

RUN_COLS = (
    "run_id, status, strategy, started_at, ended_at, heartbeat_at, received, inserted,"
    " duplicates, quarantined, requests, retries, rate_limited, cursor_resets, pages,"
    " out_of_range, extra,"
    " error, host, pid"
)


def run_from_row(row: asyncpg.Record) -> RunRow:
    extra = row["extra"]
    if isinstance(extra, str):  # asyncpg returns jsonb as text without a codec
        extra = json.loads(extra)
    expected = extra.get("expected_total") if isinstance(extra, dict) else None
    return RunRow(
        run_id=int(row["run_id"]),
        status=row["status"],
        strategy=row["strategy"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        heartbeat_at=row["heartbeat_at"],
        received=int(row["received"]),
        inserted=int(row["inserted"]),
        duplicates=int(row["duplicates"]),
        quarantined=int(row["quarantined"]),
        requests=int(row["requests"]),
        retries=int(row["retries"]),
        rate_limited=int(row["rate_limited"]),
        cursor_resets=int(row["cursor_resets"]),
        pages=int(row["pages"]),
        out_of_range=int(row["out_of_range"]),
        expected_total=int(expected) if isinstance(expected, int) and expected > 0 else None,
        error=row["error"],
        host=row["host"],
        pid=row["pid"],
    )


async def _read_runs(conn: Conn, limit: int) -> list[RunRow]:
    if not await conn.fetchval("SELECT to_regclass('ingest_runs') IS NOT NULL"):
        return []
    rows = await conn.fetch(
        f"SELECT {RUN_COLS} FROM ingest_runs ORDER BY run_id DESC LIMIT $1", limit
    )
    return [run_from_row(r) for r in rows]


async def read_runs(target: Conn | str, *, limit: int = 20) -> list[RunRow]:
    """The newest ``limit`` runs, newest first (empty if no ingest has run). Raises SinkError."""
    return await run_query(target, "reading the runs", _read_runs, limit)
