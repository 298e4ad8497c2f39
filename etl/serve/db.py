"""The server's database: one pool, guard-rails on every query, recovery by itself.

Each pooled connection runs with a ``statement_timeout`` (no request can hold the database
for long) and is read/write only where a route writes. The pool is created on first use, so
the server starts and answers ``/health`` (503) while the database is down; a connection-level
failure drops the pool, and the next request builds a new one: the server recovers by
itself when the database is back. Every failure becomes ``SinkError`` (answered 503) with the
password scrubbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from etl.errors import SinkError
from etl.sink.dsn import redact_dsn, scrub

_CONN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
)
_DB_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_CONN_ERRORS)
_OPEN_ERRORS: tuple[type[BaseException], ...] = (
    *_DB_ERRORS,
    ValueError,
)  # ValueError: a DSN asyncpg cannot parse
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*_DB_ERRORS, asyncio.TimeoutError)
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


class ServeDb:
    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        statement_timeout_ms: int = 2000,
        connect_timeout_s: float = 3.0,
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._settings = {"statement_timeout": str(statement_timeout_ms)}
        self._connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    @property
    def where(self) -> str:
        return redact_dsn(self._dsn)

    async def _get_pool(self) -> asyncpg.Pool:
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
            async with pool.acquire(timeout=self._connect_timeout_s) as conn:
                yield conn
        except _CONN_ERRORS as exc:
            await self._drop(pool)
            raise SinkError(f"database unavailable: {scrub(str(exc), self._dsn)}") from exc
        except asyncpg.QueryCanceledError as exc:
            raise SinkError("query cancelled: over the statement timeout") from exc
        except asyncpg.PostgresError as exc:
            raise SinkError(f"database error: {scrub(str(exc), self._dsn)}") from exc

    async def _drop(self, pool: asyncpg.Pool) -> None:
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
