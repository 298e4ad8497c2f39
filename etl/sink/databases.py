"""One database per fleet source (``etl.fleet``), made on the fleet's server when missing."""

from __future__ import annotations

from contextlib import suppress

from etl.errors import ConfigError, SinkError
from etl.pg import DB_ERRORS, connection, db_error
from etl.sink.dsn import redact_dsn

# advisory locks are per database: every task takes this one on the server's DATABASE_URL
# database, so two tasks never both create the same database
CREATE_LOCK_KEY = 0x65746C05

_EXISTS = "SELECT 1 FROM pg_database WHERE datname = $1"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(server_dsn: str, name: str) -> bool:
    """Create database ``name`` on ``server_dsn``'s server unless it exists (True: created).

    A failure to reach the server is ``SinkError`` (a retry may cure it); a CREATE DATABASE
    refused (no CREATEDB privilege) is ``ConfigError``: someone must create it or grant it.
    """
    async with connection(server_dsn, "checking the fleet's databases") as conn:
        if await conn.fetchval(_EXISTS, name):
            return False
        await conn.execute("SELECT pg_advisory_lock($1::bigint)", CREATE_LOCK_KEY)
        try:
            if await conn.fetchval(_EXISTS, name):
                return False  # another task made it while this one waited
            try:
                await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
            except DB_ERRORS as exc:
                cause = db_error(f"creating database {name}", exc, server_dsn)
                raise ConfigError(
                    f"database {name!r} does not exist on {redact_dsn(server_dsn)} and cannot "
                    f"be created ({cause}): create it, or grant CREATEDB to the fleet's role"
                ) from exc
            return True
        finally:
            with suppress(*DB_ERRORS, SinkError):
                await conn.execute("SELECT pg_advisory_unlock($1::bigint)", CREATE_LOCK_KEY)
