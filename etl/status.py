"""Read-only views of the progress and runs tables: `etl status`, `etl health`, `etl runs`.

Every query touches small tables only (``ingest_progress``, the ``ingest_totals`` view over it,
``ingest_runs``, the tail of one run's ``delivery_log``): never a COUNT(*) over ``events``, so
the answer takes milliseconds however large the table is.

JSON schema of ``snapshot_to_json`` (``"schema": 1``; fields are only ever added)::

    {
      "schema": 1,
      "initialized": bool,            # false: no ingest has run against this database yet
      "taken_at": iso8601,            # the database's clock
      "events": {"loaded": int, "expected": int | null, "percent": float | null,
                 "duplicates": int, "quarantined": int},
      "rate": {"now_per_s": float | null, "average_per_s": float | null, "eta_s": float | null},
      "shards": {"total": int, "done": int, "running": int, "pending": int,
                 "items": [{"id": str, "status": str, "events": int,
                            "position": iso8601 | null, "updated_at": iso8601,
                            "heartbeat_at": iso8601 | null}]},
      "run": null | run                # the running run, else the last one
    }
    run = {"id": int, "status": "running|succeeded|partial|failed", "strategy": str,
           "started_at": iso8601, "ended_at": iso8601 | null, "heartbeat_at": iso8601,
           "heartbeat_age_s": float, "received": int, "inserted": int, "duplicates": int,
           "quarantined": int, "requests": int, "retries": int, "rate_limited": int,
           "cursor_resets": int, "pages": int, "error": str | null, "host": str | null,
           "pid": int | null}

``expected`` comes from the run's ``extra.expected_total`` (the total the API reported); it is
null when unknown. ``rate.now_per_s`` is over the last ``RATE_WINDOW_S`` of the running run's
deliveries; ``average_per_s`` is the run's inserted rows over its duration.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from etl.errors import SinkError
from etl.models import RUN_COUNTERS
from etl.sink.dsn import redact_dsn, scrub

SCHEMA = 1
RATE_WINDOW_S = 30.0
_COUNTERS = RUN_COUNTERS
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_RUN_COLS = (
    "run_id, status, strategy, started_at, ended_at, heartbeat_at, received, inserted,"
    " duplicates, quarantined, requests, retries, rate_limited, cursor_resets, pages, extra,"
    " error, host, pid"
)
_SHARDS_SQL = (
    "SELECT shard_id, status, events, position_ts, updated_at, heartbeat_at"
    " FROM ingest_progress ORDER BY created_at, shard_id"
)
_RUN_SQL = (
    f"SELECT {_RUN_COLS} FROM ingest_runs ORDER BY status = 'running' DESC, run_id DESC LIMIT 1"
)
# The newest deliveries of one run (index on (run_id, id)), summed over the recent window.
_RECENT_SQL = """
SELECT coalesce(sum(rows_written), 0)::bigint FROM (
    SELECT rows_written, sent_at FROM delivery_log WHERE run_id = $1 ORDER BY id DESC LIMIT 1000
) AS d WHERE sent_at >= $2
"""


@dataclass(frozen=True, slots=True)
class ShardRow:
    shard_id: str
    status: str
    events: int
    position: dt.datetime | None  # time of the last committed event
    updated_at: dt.datetime
    heartbeat_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: int
    status: str
    strategy: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    heartbeat_at: dt.datetime
    received: int
    inserted: int
    duplicates: int
    quarantined: int
    requests: int
    retries: int
    rate_limited: int
    cursor_resets: int
    pages: int
    expected_total: int | None
    error: str | None
    host: str | None
    pid: int | None

    @property
    def duration_s(self) -> float:
        """Start to end (or to the last heartbeat: when the counters were stored)."""
        end = self.ended_at or self.heartbeat_at
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    taken_at: dt.datetime
    initialized: bool
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    shards: tuple[ShardRow, ...] = ()
    run: RunRow | None = None
    rate_now_per_s: float | None = None

    @property
    def expected_total(self) -> int | None:
        return self.run.expected_total if self.run else None

    @property
    def percent(self) -> float | None:
        total = self.expected_total
        return min(100.0, 100.0 * self.loaded / total) if total else None

    @property
    def rate_avg_per_s(self) -> float | None:
        if self.run is None or self.run.duration_s <= 0:
            return None
        return self.run.inserted / self.run.duration_s

    @property
    def eta_s(self) -> float | None:
        total = self.expected_total
        if self.run is None or self.run.status != "running" or not total:
            return None
        rate = self.rate_now_per_s or self.rate_avg_per_s
        return max(0, total - self.loaded) / rate if rate else None

    @property
    def heartbeat_age_s(self) -> float | None:
        return (self.taken_at - self.run.heartbeat_at).total_seconds() if self.run else None

    def shard_count(self, status: str) -> int:
        return sum(1 for s in self.shards if s.status == status)


def _ts_ms_to_utc(ts_ms: int | None) -> dt.datetime | None:
    return None if ts_ms is None else dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


def run_from_row(row: Any) -> RunRow:
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
        expected_total=int(expected) if isinstance(expected, int) and expected > 0 else None,
        error=row["error"],
        host=row["host"],
        pid=row["pid"],
    )


async def _read_status(conn: Any) -> StatusSnapshot:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        head = await conn.fetchrow(
            "SELECT now() AS now, to_regclass('ingest_runs') IS NOT NULL"
            " AND to_regclass('ingest_totals') IS NOT NULL AS ready"
        )
        if not head["ready"]:
            return StatusSnapshot(taken_at=head["now"], initialized=False)
        totals = await conn.fetchrow("SELECT events, duplicates, quarantined FROM ingest_totals")
        shards = tuple(
            ShardRow(
                shard_id=r["shard_id"],
                status=r["status"],
                events=int(r["events"]),
                position=_ts_ms_to_utc(r["position_ts"]),
                updated_at=r["updated_at"],
                heartbeat_at=r["heartbeat_at"],
            )
            for r in await conn.fetch(_SHARDS_SQL)
        )
        row = await conn.fetchrow(_RUN_SQL)
        run = run_from_row(row) if row else None
        rate_now = None
        if run is not None and run.status == "running":
            since = head["now"] - dt.timedelta(seconds=RATE_WINDOW_S)
            window = min(RATE_WINDOW_S, (head["now"] - run.started_at).total_seconds())
            recent = await conn.fetchval(_RECENT_SQL, run.run_id, since)
            rate_now = recent / window if window > 0 else None
    return StatusSnapshot(
        taken_at=head["now"],
        initialized=True,
        loaded=int(totals["events"]),
        duplicates=int(totals["duplicates"]),
        quarantined=int(totals["quarantined"]),
        shards=shards,
        run=run,
        rate_now_per_s=rate_now,
    )


async def _read_runs(conn: Any, limit: int) -> list[RunRow]:
    if not await conn.fetchval("SELECT to_regclass('ingest_runs') IS NOT NULL"):
        return []
    rows = await conn.fetch(
        f"SELECT {_RUN_COLS} FROM ingest_runs ORDER BY run_id DESC LIMIT $1", limit
    )
    return [run_from_row(r) for r in rows]


async def _with_conn(conn_or_dsn: Any, what: str, read: Any, *args: Any) -> Any:
    """Run ``read(conn, *args)`` on a connection or a DSN; asyncpg errors become SinkError."""
    dsn = conn_or_dsn if isinstance(conn_or_dsn, str) else ""
    where = f" at {redact_dsn(dsn)}" if dsn else ""
    try:
        if not dsn:
            return await read(conn_or_dsn, *args)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await read(conn, *args)
        finally:
            await conn.close()
    except _DB_ERRORS as exc:
        raise SinkError(
            f"{what}{where} failed: {scrub(f'{type(exc).__name__}: {exc}', dsn)}"
        ) from None


async def read_status(conn_or_dsn: Any) -> StatusSnapshot:
    """A consistent snapshot of the progress of the current (or last) run. Raises SinkError."""
    result: StatusSnapshot = await _with_conn(conn_or_dsn, "reading the status", _read_status)
    return result


async def read_runs(conn_or_dsn: Any, *, limit: int = 20) -> list[RunRow]:
    """The newest ``limit`` runs, newest first (empty if no ingest has run). Raises SinkError."""
    result: list[RunRow] = await _with_conn(conn_or_dsn, "reading the runs", _read_runs, limit)
    return result


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def run_to_json(run: RunRow, *, taken_at: dt.datetime | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": run.run_id,
        "status": run.status,
        "strategy": run.strategy,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "duration_s": round(run.duration_s, 1),
    }
    if taken_at is not None:
        doc["heartbeat_age_s"] = round((taken_at - run.heartbeat_at).total_seconds(), 1)
    doc.update({k: getattr(run, k) for k in _COUNTERS})
    doc.update(error=run.error, host=run.host, pid=run.pid)
    return doc


def snapshot_to_json(snapshot: StatusSnapshot) -> dict[str, Any]:
    """The documented, versioned JSON form (see the module docstring)."""
    s = snapshot
    return {
        "schema": SCHEMA,
        "initialized": s.initialized,
        "taken_at": _iso(s.taken_at),
        "events": {
            "loaded": s.loaded,
            "expected": s.expected_total,
            "percent": _round(s.percent, 2),
            "duplicates": s.duplicates,
            "quarantined": s.quarantined,
        },
        "rate": {
            "now_per_s": _round(s.rate_now_per_s),
            "average_per_s": _round(s.rate_avg_per_s),
            "eta_s": _round(s.eta_s),
        },
        "shards": {
            "total": len(s.shards),
            **{status: s.shard_count(status) for status in ("done", "running", "pending")},
            "items": [
                {
                    "id": r.shard_id,
                    "status": r.status,
                    "events": r.events,
                    "position": _iso(r.position),
                    "updated_at": _iso(r.updated_at),
                    "heartbeat_at": _iso(r.heartbeat_at),
                }
                for r in s.shards
            ],
        },
        "run": run_to_json(s.run, taken_at=s.taken_at) if s.run else None,
    }
