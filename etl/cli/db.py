"""Which database a command talks to: DATABASE_URL, or the embedded one in the data dir."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from etl.sink.embedded import EmbeddedPostgres


@contextlib.asynccontextmanager
async def database(database_url: str | None, data_dir: Path) -> AsyncIterator[str]:
    if database_url is not None:
        yield database_url
        return
    async with EmbeddedPostgres(data_dir / "pg") as dsn:
        yield dsn
