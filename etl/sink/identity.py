"""The ``ingest_source`` row (which dataset the state belongs to) and the sync's tally."""

from __future__ import annotations

import json

from etl.errors import SinkError
from etl.identity import SourceIdentity
from etl.models import Tally
from etl.pg import Conn
from etl.sink import progress

SOURCE_NAME = "default"  # one source per database today; the key leaves room for more


async def load_identity(conn: Conn, name: str = SOURCE_NAME) -> SourceIdentity | None:
    doc = await conn.fetchval("SELECT identity FROM ingest_source WHERE name = $1", name)
    if doc is None:
        return None
    return SourceIdentity.from_json(json.loads(doc) if isinstance(doc, str) else doc)


async def save_identity(conn: Conn, identity: SourceIdentity, name: str = SOURCE_NAME) -> None:
    await conn.execute(
        "INSERT INTO ingest_source (name, identity) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (name) DO UPDATE SET identity = EXCLUDED.identity, updated_at = now()",
        name,
        json.dumps(identity.to_json()),
    )


async def forget_identity(conn: Conn) -> int:
    status: str = await conn.execute("DELETE FROM ingest_source")
    return int(status.split()[-1])


async def retire_everything(conn: Conn) -> int:
    """Forget the identity and retire every shard (``progress.reset_progress``) together."""
    async with conn.transaction():
        await forget_identity(conn)
        return await progress.reset_progress(conn)


async def tally(conn: Conn) -> Tally:
    """Quarantined events a complete copy later resolved are loaded: they count once."""
    row = await conn.fetchrow(
        "SELECT (SELECT events FROM ingest_totals) AS events,"
        " (SELECT count(DISTINCT fingerprint) FROM quarantine WHERE resolved_at IS NULL)"
        " AS quarantined"
    )
    if row is None:  # a SELECT without FROM always returns its row
        raise SinkError("reading the totals returned nothing")
    return Tally(events=int(row["events"]), quarantined=int(row["quarantined"]))
