"""Which database a command talks to: DATABASE_URL, or the embedded one in the data dir."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import typer

from etl.errors import ConfigError, EtlError


@contextlib.asynccontextmanager
async def database(database_url: str | None, data_dir: Path) -> AsyncIterator[str]:
    if database_url is not None:
        yield database_url
        return
    from etl.sink.embedded import EmbeddedPostgres

    async with EmbeddedPostgres(embedded_pgdata(data_dir)) as dsn:
        yield dsn


def embedded_pgdata(data_dir: Path) -> Path:
    """Where every command keeps and finds the embedded PostgreSQL."""
    return data_dir / "pg"


@contextlib.asynccontextmanager
async def open_database(database_url: str | None, data_dir: Path) -> AsyncIterator[str | None]:
    """The DSN to read: ``database_url``, else the embedded server's (None if there is none)."""
    if database_url:
        yield database_url
        return
    pgdata = embedded_pgdata(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        yield None
        return
    from etl.sink.embedded import EmbeddedPostgres

    async with EmbeddedPostgres(pgdata) as dsn:
        yield dsn


def check_data_dir(data_dir: Path, *, embedded: bool) -> None:
    """Before any work: ``data_dir`` exists (made if need be) and a file can be written in it.

    It always holds the delivery log, and without DATABASE_URL the embedded PostgreSQL too;
    finding out after the database has started (or after the run) is too late.
    """
    what = "the delivery log and the embedded PostgreSQL" if embedded else "the delivery log"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".etl-write-check-", dir=data_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"--data-dir {data_dir} is not writable ({reason.lower()}); it holds {what}: "
            "choose another with --data-dir or ETL_DATA_DIR"
        ) from exc


def fail(exc: EtlError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


def where_looked(database_url: str | None, data_dir: Path, dsn: str | None) -> str:
    """The database a read command looked at, for a person (password redacted)."""
    if database_url:
        from etl.sink.dsn import redact_dsn

        return redact_dsn(database_url)
    if dsn is None:
        return f"{data_dir} (no embedded database there)"
    return f"the embedded database in {data_dir}"
