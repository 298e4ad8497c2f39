"""The sandbox and PostgreSQL the benchmark runs against."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from ingestkit.procs import Children, cpu_total, free_port

# ---------------------------------------------------------------------------------------------
# sandbox and PostgreSQL
# ---------------------------------------------------------------------------------------------


class Sandbox:
    """``python -m etl sandbox`` on a free loopback port, ready when GET /health answers."""

    def __init__(
        self, children: Children, work: Path, env: dict[str, str], events: int, args: list[str]
    ) -> None:
        self.children = children
        self.port = free_port()
        self.events = events
        self.args = args
        log = work / f"sandbox-{self.port}"
        argv = [sys.executable, "-m", "etl", "sandbox", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--events", str(events), *args]
        t0 = time.perf_counter()
        self.proc = children.spawn(argv, cwd=work, env=env, log=log)
        self.ps = psutil.Process(self.proc.pid)
        base = f"http://127.0.0.1:{self.port}"
        deadline = t0 + max(120.0, events / 20_000)
        while True:
            if self.proc.poll() is not None:
                err = log.with_suffix(".err").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"sandbox not healthy after {deadline - t0:.0f} s")
            time.sleep(0.1)
        self.startup_s = time.perf_counter() - t0
        self.api_url = base + "/api/v1"

    def cpu_s(self) -> float:
        return cpu_total(self.ps)

    def close(self) -> None:
        self.children.stop(self.proc)


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


class Postgres:
    """A server to create one database per scenario on (CREATE DATABASE / DROP ... FORCE)."""

    def __init__(self, server_url: str, data_dir: Path | None) -> None:
        self.server_url = server_url
        self.data_dir = data_dir
        self.version = ""

    def postmaster(self) -> psutil.Process | None:
        """The server's main process, when it is local and ours to read (embedded)."""
        if self.data_dir is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def cpu_s(self) -> float | None:
        pm = self.postmaster()
        return None if pm is None else cpu_total(pm, with_children=True)

    async def execute(self, sql: str, dsn: str | None = None) -> None:
        conn = await asyncpg.connect(dsn or self.server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self) -> tuple[str, str]:
        name = f"etl_bench_{secrets.token_hex(4)}"
        asyncio.run(self.execute(f'CREATE DATABASE "{name}"'))
        return name, with_db(self.server_url, name)

    def drop(self, name: str) -> None:
        asyncio.run(self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def checkpoint(self) -> None:
        asyncio.run(self.execute("CHECKPOINT"))

    def settings(self) -> dict[str, str]:
        async def go() -> dict[str, str]:
            conn = await asyncpg.connect(self.server_url)
            try:
                names = (
                    "server_version",
                    "shared_buffers",
                    "max_wal_size",
                    "synchronous_commit",
                    "fsync",
                )
                rows = await conn.fetch(
                    "SELECT name, setting, unit FROM pg_settings WHERE name = any($1)", names
                )
                return {r["name"]: f"{r['setting']}{r['unit'] or ''}" for r in rows}
            finally:
                await conn.close()

        return asyncio.run(go())


@contextlib.contextmanager
def database(pg: Postgres, keep: bool = False) -> Iterator[str]:
    name, dsn = pg.create()
    try:
        yield dsn
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                pg.drop(name)
