"""A cheap fingerprint of the loaded data: it changes whenever what the read side answers can.

Everything that writes events or their rollups leaves a trace in a small table, in the same
transaction: an ingest batch bumps its shard's counters and ``updated_at``
(``ingest_progress``, or the archive after a reset), ``etl serve``'s POST /events bumps
``posted_totals``, a purge adds a row to ``purges``, `etl anomalies` a row to
``anomaly_runs``, and truncating everything empties the counters. One query over those few
rows (never ``events``) gives a text that differs after any of them: `etl serve` keys its
answer cache by it, so repeated questions are answered from memory until the data changes.
"""

from __future__ import annotations

from etl.pg import Conn
from etl.read.db import run_query

_SQL = """
SELECT concat_ws('/',
    (SELECT events || ':' || duplicates || ':' || pages || ':' || coalesce(updated_at::text, '')
     FROM ingest_totals),
    coalesce((SELECT events || ':' || updated_at FROM posted_totals), '-'),
    coalesce((SELECT max(purge_id)::text FROM purges), '-'),
    coalesce((SELECT max(run_id)::text FROM anomaly_runs), '-'))
"""


async def _version(conn: Conn) -> str:
    return str(await conn.fetchval(_SQL))


async def data_version(target: Conn | str) -> str:
    """The data's fingerprint (equal texts: nothing was written in between). Raises SinkError
    (also on a database not migrated yet)."""
    return await run_query(target, "reading the data version", _version)
