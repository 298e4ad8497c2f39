"""PostgreSQL connections and their errors, in one place: the sink and the read side use it.

``connect`` is the one ``asyncpg.connect`` of the tool, ``DB_ERRORS`` the one list of what a
database round trip can raise, ``db_error`` the one translation into ``SinkError`` (exit 6),
with the DSN's password scrubbed. A ``ValueError`` or ``TypeError`` raised while a connection
is in use is a bug in our code, not a database failure: it is not caught here (exit 1). A DSN
asyncpg cannot parse is a configuration error (exit 2).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
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
    """What happened, in words, with the DSN and its password masked: the system's words for
    an OS error (``connection refused``), the server's message for a PostgreSQL error; the
    exception's type name only when it has no message at all."""
    if isinstance(exc, OSError) and exc.errno:
        text = os.strerror(exc.errno).lower()
    elif isinstance(exc, TimeoutError):
        text = "no answer in time"
    else:
        text = str(exc) or type(exc).__name__
    return scrub(text, dsn)


#: A server that is not up yet (a container's first boot): worth waiting for a little.
NOT_UP_YET: tuple[type[BaseException], ...] = (
    OSError,  # refused, or a host name not resolvable yet
    TimeoutError,
    asyncpg.CannotConnectNowError,  # "the database system is starting up"
)


async def wait_until_up(
    dsn: str,
    *,
    within_s: float,
    on_wait: Callable[[str], None] | None = None,
    interval_s: float = 0.5,
) -> None:
    """Return once the server accepts a connection; while it is "not up yet" (refused,
    starting up) try again every ``interval_s`` for ``within_s`` seconds (``on_wait`` hears
    about the first failure). Any other failure, or the last one, raises as ``connect`` does.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    told = False
    while True:
        try:
            conn = await connect(dsn, connect_timeout_s=min(CONNECT_TIMEOUT_S, max(1.0, within_s)))
        except SinkError as exc:
            if not isinstance(exc.__cause__, NOT_UP_YET) or loop.time() >= deadline:
                raise
            if on_wait is not None and not told:
                told = True
                reason = describe(exc.__cause__, dsn)
                on_wait(
                    f"waiting for PostgreSQL at {redact_dsn(dsn)} ({reason}); "
                    f"trying for up to {within_s:g} s"
                )
            await asyncio.sleep(interval_s)
            continue
        await conn.close()
        return


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


#: Errors after which a pooled connection (and likely the whole pool) is gone.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
)
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, ValueError)  # ValueError: bad DSN
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncio.TimeoutError)


class RecoveringPool:
    """A pool made on first use and dropped when its connections are lost, so a long-lived
    process (``etl serve``) answers while the database is down and recovers by itself when it
    is back. Each connection runs with ``statement_timeout``; every failure is ``SinkError``."""

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        statement_timeout_ms: int = 2000,
        connect_timeout_s: float = 3.0,
        application_name: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._settings = {"statement_timeout": str(statement_timeout_ms)}
        if application_name is not None:  # what pg_stat_activity shows for its connections
            self._settings["application_name"] = application_name
        self._connect_timeout_s = connect_timeout_s
        self._pool: Pool | None = None
        self._opening = asyncio.Lock()

    @property
    def where(self) -> str:
        return redact_dsn(self._dsn)

    async def _get_pool(self) -> Pool:
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._max_size,
                        timeout=self._connect_timeout_s,
                        command_timeout=30,
                        server_settings=self._settings,
                    )
                except _OPEN_ERRORS as exc:
                    raise SinkError(
                        f"database unavailable at {self.where}: {scrub(str(exc), self._dsn)}"
                    ) from exc
            return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        pool = await self._get_pool()
        try:
            conn = await pool.acquire(timeout=self._connect_timeout_s)
        except TimeoutError as exc:  # every connection busy: the database is not lost
            raise SinkError(
                f"database busy: no connection free within {self._connect_timeout_s:g} s"
            ) from exc
        except CONNECTION_LOST as exc:
            await self._drop(pool)
            raise SinkError(f"database unavailable: {scrub(str(exc), self._dsn)}") from exc
        except asyncpg.PostgresError as exc:
            raise SinkError(f"database error: {scrub(str(exc), self._dsn)}") from exc
        try:
            yield conn
        except CONNECTION_LOST as exc:
            await self._drop(pool)
            raise SinkError(f"database unavailable: {scrub(str(exc), self._dsn)}") from exc
        except asyncpg.QueryCanceledError as exc:
            raise SinkError("query cancelled: over the statement timeout") from exc
        except asyncpg.PostgresError as exc:
            raise SinkError(f"database error: {scrub(str(exc), self._dsn)}") from exc
        finally:
            if self._pool is pool:  # a dropped pool was terminated with its connections
                await pool.release(conn)

    async def _drop(self, pool: Pool) -> None:
        async with self._opening:
            if self._pool is pool:
                self._pool = None
        pool.terminate()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except _CLOSE_ERRORS:
                pool.terminate()
