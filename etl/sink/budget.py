"""The SQL of the shared rate budget (``etl.sharedrate``): one row per (key fingerprint,
lane) holding a limiter's state, changed only under the row's lock; and a log of the slots
granted, per task (and, as rows of 0 slots, the asks that found no start free at once: the
budget was booked, nothing of it left unused), for ``etl status`` and the benchmark.

Times are epoch seconds on the database's clock (``clock_timestamp()``), so tasks on
machines whose clocks disagree still agree on when a slot is due; a test injects ``now``.

Which tasks are alive, PostgreSQL knows too: each task's budget connections carry its holder
name as ``application_name`` (``etl budget host:pid``), and a task that dies (SIGKILL, a lost
machine) loses its connections, at once when its process is killed. Every exchange reads the
names of the live ones (``pg_stat_activity`` shows every session's ``application_name`` to
every role), so a limiter waiting for a dead task's answer stops waiting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from etl.pg import RecoveringPool
from etl.sharedrate import STALE_S, Apply

_NOW = "extract(epoch FROM clock_timestamp())::float8"

# Takes the row's lock (inserting it when new) and reads it with the time, after the lock.
_APP = "etl budget "
_LOCK_SQL = f"""
INSERT INTO rate_budget AS b (key_fp, lane, state, holder, updated_at)
VALUES ($1, $2, $3, $4, coalesce($5::float8, {_NOW}))
ON CONFLICT (key_fp, lane) DO UPDATE SET holder = b.holder
RETURNING b.state, b.updated_at, coalesce($5::float8, {_NOW}) AS now,
    (SELECT array_agg(a.application_name) FROM pg_stat_activity a
     WHERE a.application_name LIKE '{_APP}%') AS live
"""
_WRITE_SQL = """
UPDATE rate_budget SET state = $3, holder = $4, updated_at = $5
WHERE key_fp = $1 AND lane = $2
"""
_LOG_SQL = """
INSERT INTO rate_budget_log (key_fp, lane, holder, at, slots) VALUES ($1, $2, $3, $4, $5)
"""
_PRUNE_SQL = f"DELETE FROM rate_budget_log WHERE at < {_NOW} - $1"
LOG_KEPT_S = 86_400.0


def holder_name() -> str:
    """``host:pid`` (the host cut so that ``application_name`` keeps the pid)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def application_name(holder: str) -> str:
    return f"{_APP}{holder}"[:63]  # PostgreSQL keeps 63 bytes of it


class PgBudgetStore:
    """``etl.sharedrate.BudgetStore`` on PostgreSQL (the sink's schema, version 9)."""

    def __init__(
        self,
        dsn: str,
        *,
        holder: str | None = None,
        now: Callable[[], float] | None = None,
        statement_timeout_ms: int = 5000,
    ) -> None:
        self.holder = holder or holder_name()
        self._pool = RecoveringPool(
            dsn,
            max_size=2,
            statement_timeout_ms=statement_timeout_ms,
            application_name=application_name(self.holder),
        )
        self._now = now

    async def exchange(self, key_fp: str, lane: str, fresh: str, apply: Apply) -> None:
        given = None if self._now is None else self._now()
        async with self._pool.connection() as conn, conn.transaction():
            row = await conn.fetchrow(_LOCK_SQL, key_fp, lane, fresh, self.holder, given)
            assert row is not None
            now = float(row["now"])
            state = row["state"] if now - float(row["updated_at"]) < STALE_S else fresh
            live = frozenset(row["live"] or ())
            new, granted, waited = apply(
                state, now, lambda holder: application_name(holder) in live
            )
            await conn.execute(_WRITE_SQL, key_fp, lane, new, self.holder, now)
            if granted:
                await conn.execute(_LOG_SQL, key_fp, lane, self.holder, now, granted)
            if waited:  # 0 slots: asked, and the budget had none free at once
                await conn.execute(_LOG_SQL, key_fp, lane, self.holder, now, 0)

    async def prune(self, kept_s: float = LOG_KEPT_S) -> None:
        """Forget log rows older than ``kept_s``."""
        async with self._pool.connection() as conn:
            await conn.execute(_PRUNE_SQL, kept_s)

    async def close(self) -> None:
        await self._pool.close()
