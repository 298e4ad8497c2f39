"""The anomalies the last `etl anomalies` run stored (what the dashboard marks)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from etl.pg import Conn
from etl.read.db import run_query

_LATEST = """
SELECT f.series, f.bucket, (f.detail->>'value')::float8 AS value,
       f.detail->>'direction' AS direction, (f.detail->>'zscore')::float8 AS zscore
FROM anomaly_findings AS f
WHERE f.kind = 'anomaly'
  AND f.run_id = (SELECT max(run_id) FROM anomaly_runs)
  AND f.bucket >= $1
ORDER BY f.bucket
LIMIT 500
"""


@dataclass(frozen=True, slots=True)
class StoredAnomaly:
    series: str
    bucket: dt.datetime
    value: float
    direction: str
    zscore: float


async def _latest(conn: Conn, since: dt.datetime) -> tuple[StoredAnomaly, ...]:
    if not await conn.fetchval("SELECT to_regclass('anomaly_findings') IS NOT NULL"):
        return ()
    rows = await conn.fetch(_LATEST, since)
    return tuple(
        StoredAnomaly(r["series"], r["bucket"], r["value"], r["direction"], r["zscore"])
        for r in rows
    )


async def latest_anomalies(target: Conn | str, since: dt.datetime) -> tuple[StoredAnomaly, ...]:
    """Anomalies of the newest `etl anomalies` run in buckets from ``since`` (none if never run)."""
    return await run_query(target, "reading stored anomalies", _latest, since)
