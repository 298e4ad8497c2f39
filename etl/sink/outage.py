"""Riding through a database outage: retry what a lost connection interrupted, take the lock
again before writing, give up after ``ride_s`` (or at once when the run is stopping).

Every write of the sink is one transaction (a batch with its checkpoint, a run row, a split),
so an interrupted one either committed or left nothing: retrying it is safe. A restarted
server has dropped the connection that held the session advisory lock, so before any write
after that the lock is taken again; if another run took it meanwhile, this one stops at
once (``LockHeld``, exit 7) without writing anything more.

asyncpg's pool logs a traceback each time it fails to restore its connection floor; the
sink's pool has no floor (``min_size=0``), and ``quiet_asyncpg`` keeps any such record to
one line without the traceback, so none reaches the user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from etl.errors import LockHeld, SinkError, StoppedInOutage
from etl.pg import describe

T = TypeVar("T")
log = logging.getLogger(__name__)

# What a lost or refused connection raises: class 08, the server shutting down or starting
# up (57P01-57P03), too many connections, the socket, a connect that timed out.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    OSError,
    TimeoutError,
)


def is_connection_loss(exc: BaseException) -> bool:
    """True when ``exc`` says the connection is gone or cannot be had (worth waiting for)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    # a protocol left mid-operation by a lost connection ("cannot switch to state ...")
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    # asyncpg's InterfaceError stands for a call on a closed connection ("connection is
    # closed", "cannot call Transaction.__aexit__(): the underlying connection is closed") or
    # on one a lost connection left mid-operation ("another operation is in progress"); its
    # client-side DataError (a ValueError) is our data, not the connection.
    return isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)


class Outage:
    """Runs database operations through an outage of up to ``ride_s`` seconds.

    ``relock`` re-takes the ingest lock (raising ``LockHeld`` if another run has it);
    ``lock_lost`` tells whether the lock's connection is gone. ``stop``, when set, ends the
    waiting at once. ``sleep``/``now`` are injectable for tests.
    """

    def __init__(
        self,
        dsn: str,
        *,
        ride_s: float,
        relock: Callable[[], Awaitable[None]] | None = None,
        lock_lost: Callable[[], bool] | None = None,
        stop: asyncio.Event | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self.ride_s = ride_s
        self._relock = relock
        self._lock_lost = lock_lost
        self.stop = stop
        self._now = now
        self._guard = asyncio.Lock()
        self._lost: LockHeld | None = None
        self.outages = 0  # operations that met a lost connection and were retried
        self.reconnects = 0  # times the lock was taken again

    async def ensure_lock(self) -> None:
        """Before a write: the lock is ours, or ``LockHeld`` (for good)."""
        if self._lost is not None:
            raise self._lost
        if self._relock is None or self._lock_lost is None or not self._lock_lost():
            return
        async with self._guard:
            if self._lost is not None:
                raise self._lost
            if not self._lock_lost():
                return
            try:
                await self._relock()
            except LockHeld as exc:
                self._lost = LockHeld(
                    f"the ingest lock was lost in a database outage and {exc}; "
                    "this run stopped without writing more"
                )
                raise self._lost from exc
            self.reconnects += 1
            log.warning("database reconnected; the ingest lock is held again")

    async def run(self, what: str, op: Callable[[], Awaitable[T]], *, write: bool = True) -> T:
        """``await op()``, retried while the connection is lost, for up to ``ride_s`` from
        the first failure. A write first makes sure the lock is held. Raises ``SinkError``
        (exit 6) once the outage lasted too long, ``StoppedInOutage`` when stopped."""
        started: float | None = None
        delay = 0.1
        while True:
            try:
                if write:
                    await self.ensure_lock()
                result = await op()
            except LockHeld:
                raise
            except BaseException as exc:
                if not is_connection_loss(exc) and not (
                    isinstance(exc, SinkError)
                    and exc.__cause__ is not None
                    and is_connection_loss(exc.__cause__)
                ):
                    raise
                now = self._now()
                if started is None:
                    started = now
                    self.outages += 1
                    log.warning(
                        "database unreachable while %s (%s); retrying for up to %gs",
                        what,
                        describe(_root(exc), self._dsn),
                        self.ride_s,
                    )
                if now - started >= self.ride_s:
                    raise SinkError(
                        f"{what} failed: the database stayed unreachable for "
                        f"{now - started:.0f}s ({describe(_root(exc), self._dsn)})"
                    ) from exc
                if await self._wait(min(delay, max(0.0, started + self.ride_s - now))):
                    raise StoppedInOutage(
                        f"{what}: stopped while the database was unreachable"
                    ) from exc
                delay = min(delay * 2, 2.0)
                continue
            if started is not None:
                log.warning("database back after %.1fs (%s)", self._now() - started, what)
            return result

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the stop event fires first (then True)."""
        if self.stop is None:
            await asyncio.sleep(seconds)
            return False
        if self.stop.is_set():
            return True
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


def _root(exc: BaseException) -> BaseException:
    """The database's own error behind one of ours."""
    return exc.__cause__ if isinstance(exc, SinkError) and exc.__cause__ is not None else exc


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncpg reports through the loop when a connection is lost under it (a future
    whose error nobody awaits any more, "Resetting connection with an active transaction")
    becomes a debug record instead of a traceback on stderr; anything else is reported as
    usual."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if (exc is not None and is_connection_loss(exc)) or message.startswith(
            "Resetting connection with an active transaction"
        ):
            log.debug("after a lost database connection: %s %s", message, exc or "")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def quiet_asyncpg() -> None:
    """asyncpg's log records without tracebacks (one line each; idempotent)."""
    logger = logging.getLogger("asyncpg")
    if not any(isinstance(f, _OneLine) for f in logger.filters):
        logger.addFilter(_OneLine())
    pool_logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _OneLine) for f in pool_logger.filters):
        pool_logger.addFilter(_OneLine())
