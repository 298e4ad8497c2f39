"""The single-instance lock: a session-level PostgreSQL advisory lock on a dedicated connection.

The lock lives as long as that connection, so it is released when the process exits or dies
(kill -9 included: the server notices the closed socket). It is per database.

In task mode (``etl.tasks``, ``share`` given) the ingest lock is held *shared*, so tasks run
together while a single-instance ingest or `etl reset` (exclusive) waits for none of them,
and the share's own lock ``(SHARE_LOCK_CLASS, index)`` exclusively: the same share twice is
refused. ``planning()`` serialises planning between tasks.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from etl.errors import LockHeld
from etl.pg import DB_ERRORS, Conn, connect, db_error
from etl.sink.schema import INGEST_LOCK_KEY, PLANNING_LOCK_KEY, SHARE_LOCK_CLASS
from etl.tasks import TaskShare

_APP_NAME = re.compile(r"^etl-ingest pid=(\d+) host=(\S*)")

_HOLDER_SQL = """
SELECT a.pid, a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""

_SHARE_HOLDER_SQL = """
SELECT a.pid, a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""


def application_name() -> str:
    """How a lock holder names itself in pg_stat_activity (max 63 bytes)."""
    return f"etl-ingest pid={os.getpid()} host={socket.gethostname()}"[:63]


class IngestLock:
    """``await acquire()`` takes the lock or raises ``LockHeld`` at once; ``release()`` drops it.

    ``share``: task mode (the ingest lock shared, the share's lock exclusive)."""

    def __init__(
        self, dsn: str, *, connect_timeout: float = 10.0, share: TaskShare | None = None
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: Conn | None = None
        self.share = share

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def exclusive(self) -> bool:
        """Held by a single-instance run: no other ingest can be alive."""
        return self.held and self.share is None

    async def acquire(self) -> None:
        if self.held:
            return
        conn = await connect(
            self._dsn,
            connect_timeout_s=self._connect_timeout,
            purpose=" to take the ingest lock",
            server_settings={"application_name": application_name()},
        )
        try:
            message = await self._take(conn)
        except DB_ERRORS as exc:
            await conn.close()
            raise db_error("taking the ingest lock", exc, self._dsn) from exc
        if message is None:
            self._conn = conn
            return
        await conn.close()
        raise LockHeld(message)

    async def _take(self, conn: Conn) -> str | None:
        """Take the lock(s) on ``conn``: None when held, else why not."""
        share = self.share
        how = "pg_try_advisory_lock" if share is None else "pg_try_advisory_lock_shared"
        if not await conn.fetchval(f"SELECT {how}($1::bigint)", INGEST_LOCK_KEY):
            holder = await conn.fetchrow(_HOLDER_SQL, INGEST_LOCK_KEY)
            return _held_message(holder)
        if share is None:
            return None
        if await conn.fetchval(
            "SELECT pg_try_advisory_lock($1::int, $2::int)", SHARE_LOCK_CLASS, share.index
        ):
            return None
        holder = await conn.fetchrow(_SHARE_HOLDER_SQL, SHARE_LOCK_CLASS, share.index)
        base = f"another etl ingest is running {share.label} against this database"
        return _held_message(holder, base=base)

    @asynccontextmanager
    async def planning(self) -> AsyncIterator[None]:
        """Hold the planning lock (waiting for a task that is planning), on a connection of
        its own; a no-op for a single-instance run, which excludes every other already.

        Not on the lock's connection: a task killed while it waits here leaves a backend
        blocked on this lock, which sees the closed socket only once the lock is granted
        (after the other task's planning, a head request to the API: seconds). Had that
        backend held the share's lock too, the task's successor would be refused the share
        (exit 75, at every retry) until then."""
        if self.share is None or not self.held:
            yield
            return
        conn = await connect(
            self._dsn,
            connect_timeout_s=self._connect_timeout,
            purpose=" to take the planning lock",
            server_settings={"application_name": application_name()},
        )
        try:
            try:
                await conn.execute("SELECT pg_advisory_lock($1::bigint)", PLANNING_LOCK_KEY)
            except DB_ERRORS as exc:
                raise db_error("taking the planning lock", exc, self._dsn) from exc
            yield
        finally:
            try:
                await conn.close(timeout=5)  # releases the planning lock
            except Exception:  # unusable, or a query still waiting: drop it (released too)
                conn.terminate()

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock_all()")
        except DB_ERRORS:
            pass  # closing the connection releases it anyway
        finally:
            await conn.close()


def _held_message(
    holder: Any, base: str = "another etl ingest is running against this database"
) -> str:
    if holder is None:
        return f"{base} (it holds the ingest lock)"
    m = _APP_NAME.match(holder["application_name"] or "")
    if m:
        return f"{base} (pid {m.group(1)} on host {m.group(2) or '?'})"
    return f"{base} (server backend pid {holder['pid']})"
