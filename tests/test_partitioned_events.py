"""docs/citus.md, checked on plain PostgreSQL: a table cut by a hash of a column keeps a
unique key only when the key includes that column (Citus's rule for a distribution column is
the same), and ``events`` hash-partitioned by ``id`` takes the loader unchanged: the direct
COPY, the staged upsert and the rollups stay exact."""

from __future__ import annotations

import asyncpg
import pytest

from etl.read.rollups import verify
from etl.sink.postgres import PostgresSink
from etl.source.datasync import EVENTS
from tests.read_data import execute, fetch, load, mixed

PARTS = 4

_BY_ID = f"""
ALTER TABLE events RENAME TO events_plain;
CREATE TABLE events (LIKE events_plain INCLUDING ALL) PARTITION BY HASH (id);
{
    "".join(
        f"CREATE TABLE events_p{i} PARTITION OF events FOR VALUES WITH (MODULUS {PARTS}, "
        f"REMAINDER {i});"
        for i in range(PARTS)
    )
}
CREATE TRIGGER etl_rollup_insert AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION etl_rollup_insert();
"""


async def _migrated(db_url: str) -> None:
    async with PostgresSink(db_url, stream=EVENTS):
        pass


async def test_a_key_without_the_partition_column_is_refused(db_url: str) -> None:
    """Partitioned by ``user_id`` (what per-user reads would want), ``PRIMARY KEY (id)`` cannot
    be declared: uniqueness of an event id would no longer be enforced across the pieces."""
    with pytest.raises(asyncpg.FeatureNotSupportedError):
        await execute(
            db_url,
            "CREATE TABLE ev_by_user (id uuid PRIMARY KEY, user_id uuid) "
            "PARTITION BY HASH (user_id)",
        )


async def test_a_key_that_includes_it_lets_an_id_in_twice(db_url: str) -> None:
    """``PRIMARY KEY (user_id, id)`` is accepted, and then the same event id loads twice
    when its user differs between two reads (e.g. a stripped copy, then the complete one):
    exactly once is lost. Hence ``id`` is the distribution column."""
    await execute(
        db_url,
        "CREATE TABLE ev_by_user (id uuid, user_id uuid, PRIMARY KEY (user_id, id)) "
        "PARTITION BY HASH (user_id);"
        + "".join(
            f"CREATE TABLE ev_by_user_{i} PARTITION OF ev_by_user"
            f" FOR VALUES WITH (MODULUS 2, REMAINDER {i});"
            for i in range(2)
        ),
    )
    for user in ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"):
        await execute(
            db_url,
            "INSERT INTO ev_by_user VALUES ('11111111-1111-1111-1111-111111111111', $1) "
            "ON CONFLICT DO NOTHING",
            user,
        )
    rows = await fetch(db_url, "SELECT count(*) AS n FROM ev_by_user")
    assert rows[0]["n"] == 2


async def test_events_partitioned_by_id_load_exactly_once(db_url: str) -> None:
    """The loader's direct COPY, its fallback to the staged ``ON CONFLICT (id)`` upsert on a
    re-read, and the rollups in the same transaction work unchanged on ``events`` cut into
    4 hash partitions of ``id``: every row once, spread over every partition, rollups exact."""
    await _migrated(db_url)
    await execute(db_url, _BY_ID)
    records = mixed(400)
    assert await load(db_url, [records[:250]]) == 250  # direct COPY
    assert await load(db_url, [records[200:400]]) == 150  # overlaps: redone staged
    assert await load(db_url, [records[:100]], direct=False) == 0  # staged, all known
    counts = await fetch(
        db_url, "SELECT tableoid::regclass::text AS part, count(*) AS n FROM events GROUP BY 1"
    )
    assert sum(r["n"] for r in counts) == 400
    assert len(counts) == PARTS
    ids = await fetch(db_url, "SELECT count(DISTINCT id) AS n FROM events")
    assert ids[0]["n"] == 400
    assert (await verify(db_url)).ok
