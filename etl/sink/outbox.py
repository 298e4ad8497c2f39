"""The load side of the transactional outbox: what a batch's transaction owes the pushers.

``write_batch`` asks ``declared(conn)`` first thing in its transaction and, when a push
dataset is declared, calls ``enqueue`` with the batch's *new* events before it commits: one
``push_outbox`` row per declared dataset, so the rows and what must be pushed commit together
or not at all. The cost when nothing is declared is one tiny query per batch.

Declaring a dataset (``etl.push.store.declare``) takes ``push_datasets`` in ACCESS EXCLUSIVE
mode and backfills from ``events``; ``declared`` reads ``push_datasets`` (ACCESS SHARE, held
until commit). So a load either committed before the backfill's snapshot (its events are in
the backfill) or sees the new dataset (its outbox row names it): never neither, never both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from etl.pg import Conn

_DECLARED = "SELECT EXISTS (SELECT 1 FROM push_datasets)"
_ENQUEUE = """
INSERT INTO push_outbox (dataset, event_ids, lo, hi)
SELECT name, CASE WHEN kind = 'events' THEN $1::uuid[] ELSE '{}'::uuid[] END, $2, $3
FROM push_datasets
"""


async def declared(conn: Conn) -> bool:
    """Whether any push dataset is declared (locks ``push_datasets`` until commit)."""
    return bool(await conn.fetchval(_DECLARED))


async def enqueue(conn: Conn, ids: list[Any], lo: dt.datetime, hi: dt.datetime) -> None:
    """Owe every declared dataset the events ``ids`` (occurred between ``lo`` and ``hi``)."""
    if ids:
        await conn.execute(_ENQUEUE, ids, lo, hi)
