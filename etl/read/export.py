"""Every loaded event id to a file, one per line (`etl export-ids`)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from etl.errors import SinkError
from etl.pg import connection


async def export_ids(dsn: str, path: Path) -> int:
    """Stream ``SELECT id FROM events`` into ``path`` with COPY; returns the number of ids.

    Written to ``<path>.part`` first and renamed, so ``path`` is never half a file."""
    tmp = path.with_name(path.name + ".part")
    async with connection(dsn, "exporting the ids") as conn:
        try:
            status = await conn.copy_from_query("SELECT id FROM events ORDER BY id", output=tmp)
        except asyncpg.UndefinedTableError as exc:
            raise SinkError(
                "no events table: nothing has been ingested into this database"
            ) from exc
    tmp.replace(path)
    return int(str(status).split()[-1])
