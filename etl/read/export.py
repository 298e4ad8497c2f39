"""Every loaded event id to a file, one per line (`etl export-ids`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from etl.errors import ConfigError, NothingIngested
from etl.pg import connection


async def export_ids(dsn: str, path: Path) -> int:
    """Stream ``SELECT id FROM events`` into ``path`` with COPY; returns the number of ids.

    Written to ``<path>.part`` first and renamed, so ``path`` is never half a file."""
    tmp = path.with_name(path.name + ".part")
    try:
        out = await asyncio.to_thread(open, tmp, "wb")  # closed below, after the COPY
    except OSError as exc:
        raise ConfigError(f"cannot write {tmp}: {(exc.strerror or str(exc)).lower()}") from exc
    with out:
        async with connection(dsn, "exporting the ids") as conn:
            try:
                status = await conn.copy_from_query("SELECT id FROM events ORDER BY id", output=out)
            except asyncpg.UndefinedTableError as exc:
                raise NothingIngested(
                    "nothing ingested here: this database has no events table (is DATABASE_URL "
                    "the one `etl ingest` loaded?)"
                ) from exc
    tmp.replace(path)
    return int(str(status).split()[-1])
