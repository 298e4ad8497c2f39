"""An embedded PostgreSQL (the ``pgserver`` package) so a fresh machine needs no database service.

``EmbeddedPostgres(data_dir)`` starts (or reuses) a server whose data lives in ``data_dir`` and
yields a DSN over a unix socket (``postgresql://postgres:@/etl?host=<socket dir>``, which
asyncpg accepts). The data persists, so a rerun resumes where the last run stopped.

Sharing and stopping. pgserver records every process using a data dir in
``<data_dir>/.handle_pids.json`` and stops the server when the LAST of them exits (its
``cleanup_mode='stop'``); so ``etl status`` in a second terminal does not pull the server from
under a running ``etl ingest``. A process killed with SIGKILL cannot remove itself from that
list, which would keep the server up forever; dead pids are therefore pruned before each start.
The server process survives a SIGKILL of its owner; the next start finds and reuses it.
``stop_on_exit=False`` leaves the server running (useful when many short commands follow).

Root. PostgreSQL refuses to run as root; pgserver then creates a system user ``pgserver``, runs
the server as that user and makes ``data_dir``'s parent directories traversable (o+rx).

pgserver's API. pgserver is pinned (``==0.1.4``, in pyproject.toml and the lock files). We use
its public API: ``get_server(pgdata, cleanup_mode=...)``, the handle's ``__enter__``/
``__exit__`` (its reference count), ``get_uri()`` and ``psql()``. One private part remains,
on purpose: ``_prune_dead_handles`` reads and rewrites ``<pgdata>/.handle_pids.json`` under
``PostgresServer._lock`` (the inter-process lock pgserver itself takes around that file),
because pgserver counts a server's users by pid in that file and has no public way to drop
the pid of a process that died by SIGKILL; without it such a death keeps the server up
forever. Moving to a new pgserver means re-checking that file's format and that lock.

Not installed. The Docker image leaves pgserver (and its ~34 MB of PostgreSQL binaries) out:
it always runs against DATABASE_URL. Without pgserver, a command that would start the
embedded server stops with a ConfigError (exit 2) saying to set DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from etl.errors import ConfigError, SinkError

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _pgserver() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (cron, containers);
    # it then falls back to /tmp/runtime-<uid>, which is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:
            raise ConfigError(
                "no DATABASE_URL, and this installation has no embedded PostgreSQL (the "
                "Docker image leaves it out): set DATABASE_URL or --database-url"
            ) from exc
    return pgserver


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _prune_dead_handles(pgserver: Any, pgdata: Path) -> None:
    """Drop pids of processes that died without releasing the server (kill -9)."""
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return
    with pgserver.PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
        if alive != pids:
            path.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """Context manager (sync or async) around a pgserver instance; yields a DSN."""

    def __init__(self, data_dir: Path, *, database: str = "etl", stop_on_exit: bool = True) -> None:
        if not _DB_NAME.match(database):
            raise ValueError(f"invalid database name {database!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.database = database
        self.stop_on_exit = stop_on_exit
        self._server: Any = None
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise SinkError("the embedded PostgreSQL is not started")
        return self._dsn

    def start(self) -> str:
        """Start or reuse the server, create the database if missing; returns its DSN."""
        if self._dsn is not None:
            return self._dsn
        pgserver = _pgserver()
        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            _prune_dead_handles(pgserver, self.data_dir)
            server = pgserver.get_server(
                self.data_dir, cleanup_mode="stop" if self.stop_on_exit else None
            )
            server.__enter__()  # reference count: stop only when the last user leaves
        except Exception as exc:
            reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else exc
            log = self.data_dir / "log"
            where = f" (server log: {log})" if log.is_file() else ""
            raise SinkError(
                f"cannot start the embedded PostgreSQL in {self.data_dir}: {reason}{where}"
            ) from exc
        self._server = server
        try:
            self._create_database()
        except BaseException:
            self.stop()
            raise
        self._dsn = str(server.get_uri(self.database))
        return self._dsn

    def _create_database(self) -> None:
        """CREATE DATABASE unless it exists, through pgserver's public ``psql()``; the
        advisory lock keeps two processes starting at once from both creating it."""
        marker = "etl-database-present:"
        script = (
            "SELECT pg_advisory_lock(724501);\n"
            f"SELECT 'CREATE DATABASE \"{self.database}\"' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{self.database}')\\gexec\n"
            "SELECT pg_advisory_unlock(724501);\n"
            f"SELECT '{marker}' || datname FROM pg_database WHERE datname = '{self.database}';\n"
        )
        try:
            output = self._server.psql(script)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SinkError(f"cannot create database {self.database!r}: {exc}") from exc
        if f"{marker}{self.database}" not in output:
            raise SinkError(
                f"cannot create database {self.database!r} in the embedded PostgreSQL "
                f"(server log: {self.data_dir / 'log'})"
            )

    def stop(self) -> None:
        """Release this handle; the server stops when no other live process uses it."""
        server, self._server = self._server, None
        self._dsn = None
        if server is not None:
            server.__exit__(None, None, None)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> str:
        # A start cannot be abandoned half-way (the thread goes on, and its handle would
        # keep the server up): on cancellation (Ctrl-C during start-up) let it finish,
        # release it, then give way.
        starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await starting
            await asyncio.to_thread(self.stop)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
