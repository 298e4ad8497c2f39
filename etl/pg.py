"""PostgreSQL connections and their errors, in one place: the sink and the read side use it.

``connect`` is the one ``asyncpg.connect`` of the tool, ``DB_ERRORS`` the one list of what a
database round trip can raise, ``db_error`` the one translation into ``SinkError`` (exit 6),
with the DSN's password scrubbed. A ``ValueError`` or ``TypeError`` raised while a connection
is in use is a bug in our code, not a database failure: it is not caught here (exit 1). A DSN
asyncpg cannot parse is a configuration error (exit 2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from etl.errors import ConfigError, SinkError
from etl.sink.dsn import redact_dsn, scrub

#: A connection of our own or one lent by a pool: what query functions take.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

#: What a database round trip can raise (asyncpg's client-side DataError is an
#: InterfaceError). Not ValueError/TypeError: those are our bugs and must exit 1.
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
CONNECT_TIMEOUT_S = 10.0


def describe(exc: BaseException, dsn: str) -> str:
    """``"<ExceptionType>: <message>"`` with the DSN and its password masked."""
    return scrub(f"{type(exc).__name__}: {exc}", dsn)


def db_error(what: str, exc: BaseException, dsn: str) -> SinkError:
    """The ``SinkError`` for a failed ``what`` (e.g. "reading the status")."""
    return SinkError(f"{what} failed: {describe(exc, dsn)}")


async def connect(
    dsn: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    purpose: str = "",
    server_settings: Mapping[str, str] | None = None,
) -> asyncpg.Connection[asyncpg.Record]:
    """A new connection; failure to connect becomes ``SinkError`` (``ConfigError`` for a DSN
    asyncpg cannot parse). ``purpose`` completes the message, e.g. " to take the lock"."""
    try:
        return await asyncpg.connect(
            dsn, timeout=connect_timeout_s, server_settings=dict(server_settings or {}) or None
        )
    except (asyncpg.ClientConfigurationError, ValueError) as exc:
        # asyncpg's own parsing of the DSN (a port that is not a number, a bad sslmode)
        raise ConfigError(
            f"--database-url is not a usable PostgreSQL URL ({redact_dsn(dsn)}): "
            f"{describe(exc, dsn)}"
        ) from exc
    except DB_ERRORS as exc:
        raise SinkError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}{purpose}: {describe(exc, dsn)}"
        ) from exc


@asynccontextmanager
async def connection(
    dsn: str, what: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S
) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A connection for one task, closed afterwards; a database error inside the block
    becomes ``SinkError("<what> at <dsn> failed: …")``."""
    conn = await connect(dsn, connect_timeout_s=connect_timeout_s)
    try:
        yield conn
    except DB_ERRORS as exc:
        raise db_error(f"{what} at {redact_dsn(dsn)}", exc, dsn) from exc
    finally:
        await conn.close()
