"""Write every loaded event id to a file, one per line (for `etl export-ids`)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from etl.errors import SinkError
from etl.sink.dsn import scrub


async def export_ids(dsn: str, path: Path) -> int:
    """Stream ``SELECT id FROM events`` into ``path`` with COPY; returns the number of ids."""
    tmp = path.with_name(path.name + ".part")
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SinkError(f"cannot connect to the database: {scrub(str(exc), dsn)}") from None
    try:
        status = await conn.copy_from_query("SELECT id FROM events ORDER BY id", output=tmp)
    except asyncpg.UndefinedTableError:
        raise SinkError("no events table: nothing has been ingested into this database") from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise SinkError(f"export failed: {scrub(str(exc), dsn)}") from None
    finally:
        await conn.close()
    tmp.replace(path)
    return int(str(status).split()[-1])
