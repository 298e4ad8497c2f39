"""The single-instance lock: a session-level PostgreSQL advisory lock on a dedicated connection.

The lock lives as long as that connection, so it is released when the process exits or dies
(kill -9 included: the server notices the closed socket). It is per database.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from etl.errors import LockHeld
from etl.pg import DB_ERRORS, Conn, connect, db_error
from etl.sink.schema import INGEST_LOCK_KEY

_APP_NAME = re.compile(r"^etl-ingest pid=(\d+) host=(\S*)")

_HOLDER_SQL = """
SELECT a.pid, a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""


def application_name() -> str:
    """How a lock holder names itself in pg_stat_activity (max 63 bytes)."""
    return f"etl-ingest pid={os.getpid()} host={socket.gethostname()}"[:63]


class IngestLock:
    """``await acquire()`` takes the lock or raises ``LockHeld`` at once; ``release()`` drops it."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: Conn | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

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
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", INGEST_LOCK_KEY)
            if got:
                self._conn = conn
                return
            holder = await conn.fetchrow(_HOLDER_SQL, INGEST_LOCK_KEY)
        except DB_ERRORS as exc:
            await conn.close()
            raise db_error("taking the ingest lock", exc, self._dsn) from exc
        await conn.close()
        raise LockHeld(_held_message(holder))

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock($1::bigint)", INGEST_LOCK_KEY)
        except DB_ERRORS:
            pass  # closing the connection releases it anyway
        finally:
            await conn.close()


def _held_message(holder: Any) -> str:
    base = "another etl ingest is running against this database"
    if holder is None:
        return f"{base} (it holds the ingest lock)"
    m = _APP_NAME.match(holder["application_name"] or "")
    if m:
        return f"{base} (pid {m.group(1)} on host {m.group(2) or '?'})"
    return f"{base} (server backend pid {holder['pid']})"
