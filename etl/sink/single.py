"""Insert events that arrive one request at a time (`etl serve`'s ``POST /events``).

Same rules as a batch of an ingest: ``ON CONFLICT (id) DO NOTHING`` (the first copy wins, a
repeat is reported as already present, never doubled), invalid events go to ``quarantine``
with their reason, and the rollups gain exactly the rows inserted, all in ONE transaction.
There is no shard and no checkpoint: these events did not come from the API's order; the
events inserted are counted in ``posted_totals`` (what `etl status` adds to the progress
counters). A blocking purge (`etl purge` without ``--allow-reload``) applies here as it does to
an ingest: an event it matches is not inserted and is reported as purged.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from etl.models import Quarantined, Record
from etl.sink.batch import _UPSERT_QUARANTINE, _quarantine_args
from etl.sink.purge import load_rules
from etl.sources.events import EVENT_COLUMNS

_COLS = ", ".join(EVENT_COLUMNS)
_INSERT = f"""
INSERT INTO events ({_COLS})
SELECT u.id, u.session_id, u.user_id, u.type, u.name, u.occurred_at,
       u.properties::jsonb, u.session::jsonb, u.timestamp_raw
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[],
            $7::text[], $8::text[], $9::text[])
     AS u(id, session_id, user_id, type, name, occurred_at, properties, session, timestamp_raw)
ORDER BY u.id
ON CONFLICT (id) DO NOTHING
RETURNING id::text
"""
_COUNT_POSTED = """
INSERT INTO posted_totals AS p (one, events) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE SET events = p.events + excluded.events, updated_at = now()
"""
HTTP_SHARD = "http"  # the quarantine's shard_id for events posted to `etl serve`


@dataclass(frozen=True, slots=True)
class InsertResult:
    created: frozenset[str]  # ids inserted now
    present: frozenset[str]  # ids that were already loaded (nothing written)
    quarantined: int
    purged: frozenset[str] = frozenset()  # ids a blocking purge removed: not inserted


async def insert_events(
    conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
    records: list[Record],
    quarantined: list[Quarantined],
) -> InsertResult:
    """Insert ``records`` (distinct ids) and quarantine ``quarantined`` in one transaction."""
    async with conn.transaction():
        created: set[str] = set()
        purged: set[str] = set()
        if records:
            rules = await load_rules(conn)
            purged = {r[0] for r in records if any(rule.matches(r) for rule in rules)}
        kept = [r for r in records if r[0] not in purged]
        if kept:
            columns = [list(col) for col in zip(*kept, strict=True)]
            rows = await conn.fetch(_INSERT, *columns)
            created = {r["id"] for r in rows}
            # the insert trigger adds exactly the rows inserted now to the rollups
        if quarantined:
            await conn.execute(_UPSERT_QUARANTINE, HTTP_SHARD, None, *_quarantine_args(quarantined))
        if created:  # last: the one counter row is held only until the commit
            await conn.execute(_COUNT_POSTED, len(created))
    ids = {r[0] for r in kept}
    return InsertResult(
        frozenset(created), frozenset(ids - created), len(quarantined), frozenset(purged)
    )
