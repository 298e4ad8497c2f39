"""The ``ingest_runs`` table: one row per ``etl ingest`` with its status, counters and heartbeat."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from etl.models import RUN_COUNTERS, RunCounters, RunStatus
from etl.pg import Conn

_COUNTER_COLUMNS = RUN_COUNTERS
_SET_COUNTERS = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(_COUNTER_COLUMNS))
_EXTRA_ARG = len(_COUNTER_COLUMNS) + 2


def _counter_args(counters: RunCounters) -> list[Any]:
    args: list[Any] = [getattr(counters, c) for c in _COUNTER_COLUMNS]
    args.append(json.dumps(counters.extra))
    return args


async def mark_stale_runs(
    conn: Conn, *, stale_after_s: float, exclude_run: int | None, lock_held: bool
) -> int:
    """Mark 'running' runs that can no longer be alive as 'failed'; returns how many.

    With the ingest lock held, every other 'running' run is dead (a live run holds the lock).
    Without it, only runs whose heartbeat is older than ``stale_after_s`` are.
    """
    status = await conn.execute(
        """
        UPDATE ingest_runs
        SET status = 'failed',
            ended_at = coalesce(ended_at, heartbeat_at),
            error = coalesce(error, CASE WHEN $3
                THEN 'crashed: the process ended without finishing the run'
                ELSE 'crashed: no heartbeat since ' || heartbeat_at::text END)
        WHERE status = 'running'
          AND run_id IS DISTINCT FROM $1
          AND ($3 OR heartbeat_at < now() - make_interval(secs => $2))
        """,
        exclude_run,
        stale_after_s,
        lock_held,
    )
    return int(status.split()[-1])


async def insert_run(conn: Conn, strategy: str) -> int:
    run_id: int = await conn.fetchval(
        "INSERT INTO ingest_runs (strategy, host, pid) VALUES ($1, $2, $3) RETURNING run_id",
        strategy,
        socket.gethostname(),
        os.getpid(),
    )
    return run_id


async def update_run(conn: Conn, run_id: int, counters: RunCounters) -> None:
    await conn.execute(
        f"UPDATE ingest_runs SET {_SET_COUNTERS}, extra = ${_EXTRA_ARG}::jsonb,"
        " heartbeat_at = now() WHERE run_id = $1",
        run_id,
        *_counter_args(counters),
    )


async def end_run(
    conn: Conn, run_id: int, status: RunStatus, counters: RunCounters, error: str | None
) -> None:
    await conn.execute(
        f"UPDATE ingest_runs SET {_SET_COUNTERS}, extra = ${_EXTRA_ARG}::jsonb,"
        f" heartbeat_at = now(), ended_at = now(), status = ${_EXTRA_ARG + 1},"
        f" error = ${_EXTRA_ARG + 2} WHERE run_id = $1",
        run_id,
        *_counter_args(counters),
        status,
        error,
    )
