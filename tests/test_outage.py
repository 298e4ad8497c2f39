"""A database outage under a live run, on a private PostgreSQL the test restarts itself.

The run rides through a fast or an immediate (crash) restart and ends exact; the lock is
taken again before it writes, so a second `etl ingest` probing it meanwhile exits 7; if
another run took the lock during the outage, this one stops with LockHeld and writes nothing
more; an outage longer than the configured ride ends in a clear SinkError; SIGTERM takes
effect within a second while the database (or the API) does not answer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from etl.clock import FakeClock
from etl.errors import ExitCode, LockHeld, SinkError
from etl.sink.schema import INGEST_LOCK_KEY
from tests.fixtures_db import with_database
from tests.ingest_harness import Recorder, ingest, loaded_ids, query
from tests.pg_restartable import RestartablePostgres
from tests.test_cli_ingest import env_for, etl
from tests.test_ingest import assert_exact, start


@pytest.fixture(scope="module")
def server() -> Iterator[RestartablePostgres]:
    with RestartablePostgres() as pg:
        yield pg


@pytest.fixture
async def private_db(server: RestartablePostgres) -> AsyncIterator[str]:
    """A fresh database on the restartable server (which is up again afterwards)."""
    name = "etl_outage_" + secrets.token_hex(4)
    conn = await asyncpg.connect(server.dsn(), timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield with_database(server.dsn(), name)
    server.start() if not _up(server) else None


def _up(server: RestartablePostgres) -> bool:
    done = subprocess.run(
        [str(server.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)],
        capture_output=True,
    )
    return done.returncode == 0


def _probe(dsn: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """A second `etl ingest` against the same database (it must stop at the lock)."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "etl", "ingest", "--database-url", dsn),
            *("--data-dir", str(data_dir), "--api-url", "http://127.0.0.1:9/api/v1"),
            *("--api-key", "ds_probe"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(),
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_restart_mid_run_is_ridden_through_and_the_lock_taken_again(
    sandbox: Any,
    server: RestartablePostgres,
    private_db: str,
    tmp_path: Path,
    mode: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """PostgreSQL restarted under a live run: the run ends exact, it holds the lock again
    after the restart (a second `etl ingest` exits 7 with one line), and no traceback."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    probes: list[subprocess.CompletedProcess[str]] = []
    reporter = Recorder()

    def on_batch(n: int) -> None:  # in the loop: nothing else runs meanwhile
        if n == 4:
            server.restart(mode)
        elif n == 10:
            probes.append(_probe(private_db, tmp_path))

    reporter.on_batch = on_batch
    outcome = await ingest(
        sb.base_url, sb.api_key, private_db, clock, reporter=reporter, pipeline={"page_size": 1000}
    )
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(private_db), sb.ids())
    assert reporter.sink.outage.reconnects >= 1
    [probe] = probes
    assert probe.returncode == ExitCode.LOCKED, probe.stderr
    lines = probe.stderr.strip().splitlines()
    assert len(lines) == 1 and "another etl ingest is running" in lines[0]
    assert "Traceback" not in capfd.readouterr().err


async def test_a_lock_taken_by_another_run_during_the_outage_stops_this_one_unwritten(
    sandbox: Any, server: RestartablePostgres, private_db: str
) -> None:
    """If another run takes the lock while this one's connection is down, this run stops
    with LockHeld (exit 7) at its next write and writes nothing more."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    held: dict[str, Any] = {}
    reporter = Recorder()

    def on_batch(n: int) -> None:
        if n != 4:
            return
        server.restart("fast")
        held["count"] = _count_sync(server, private_db)
        held["holder"] = _hold_lock(server, private_db)

    reporter.on_batch = on_batch
    try:
        with pytest.raises(LockHeld) as info:
            await ingest(
                sb.base_url,
                sb.api_key,
                private_db,
                clock,
                reporter=reporter,
                pipeline={"page_size": 1000},
            )
        assert "lost in a database outage" in str(info.value)
        rows = await query(private_db, "SELECT count(*) AS n FROM events")
        assert rows[0]["n"] == held["count"]
    finally:
        if "holder" in held:
            held["holder"].kill()
            held["holder"].wait()


async def test_an_outage_longer_than_the_ride_fails_with_a_clear_error(
    sandbox: Any, server: RestartablePostgres, private_db: str
) -> None:
    """A database down for longer than --db-outage ends the run with SinkError (exit 6)
    saying how long it stayed unreachable; nothing is lost (the rerun is exact)."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    reporter = Recorder()
    reporter.on_batch = lambda n: server.stop("fast") if n == 3 else None
    with pytest.raises(SinkError) as info:
        await ingest(
            sb.base_url,
            sb.api_key,
            private_db,
            clock,
            reporter=reporter,
            pipeline={"page_size": 1000},
            sink={"outage_s": 0.5},
        )
    assert "stayed unreachable" in str(info.value)
    server.start()
    again = await ingest(sb.base_url, sb.api_key, private_db, clock)
    assert again.status == "succeeded"
    assert_exact(await loaded_ids(private_db), sb.ids())


async def test_sigterm_while_the_database_is_down_takes_effect_within_a_second(
    sandbox: Any, server: RestartablePostgres, private_db: str, tmp_path: Path
) -> None:
    """`etl ingest` waiting out a database outage stops at SIGTERM at once: exit 3, one
    summary, no traceback."""
    from etl.sandbox import SystemClock

    sb = await sandbox(events=200_000, clock=SystemClock(), unlimited=True)
    proc = await etl(
        "ingest",
        "--api-url",
        sb.base_url,
        "--api-key",
        sb.api_key,
        "--database-url",
        private_db,
        "--data-dir",
        str(tmp_path),
        "--page-size",
        "1000",
        "--log-format",
        "json",
        env=env_for(),
    )
    assert proc.stderr is not None
    try:
        await _wait_rows(private_db)
        await asyncio.to_thread(server.stop, "fast")
        async with asyncio.timeout(30):
            while b"database unreachable" not in await proc.stderr.readline():
                pass
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(server.start)
    assert proc.returncode == ExitCode.PARTIAL, err.decode()
    assert elapsed < 1.5, elapsed
    assert b"Traceback" not in out + err


async def test_sigterm_while_the_api_is_retried_takes_effect_within_a_second(
    db_url: str, tmp_path: Path
) -> None:
    """With the API unreachable (back-off between retries), SIGTERM stops the run at once."""
    proc = await etl(
        "ingest",
        "--api-url",
        "http://127.0.0.1:9/api/v1",
        "--api-key",
        "ds_unreachable",
        "--database-url",
        db_url,
        "--data-dir",
        str(tmp_path),
        env=env_for(),
    )
    try:
        await _wait_for(db_url, _RUNNING)
        await asyncio.sleep(0.5)  # into the retries' back-off
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == ExitCode.PARTIAL, err.decode()
    assert elapsed < 1.5, elapsed
    assert b"Traceback" not in out + err


_RUNNING = "SELECT 1 FROM ingest_runs WHERE status = 'running'"


async def _wait_for(dsn: str, sql: str) -> None:
    """Poll until ``sql`` returns a row (a condition in another process: no event to await)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if await query(dsn, sql):
                return
        except asyncpg.UndefinedTableError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true: {sql}")


async def _wait_rows(dsn: str) -> None:
    await _wait_for(dsn, "SELECT 1 FROM events LIMIT 1")


def _psql(server: RestartablePostgres, db: str) -> list[str]:
    name = db.rsplit("/", 1)[1]
    cmd = [str(server.bin / "psql"), "-h", "127.0.0.1", "-p", str(server.port)]
    return [*cmd, "-U", "postgres", "-d", name, "-tAX"]


def _count_sync(server: RestartablePostgres, db: str) -> int:
    out = subprocess.run(
        [*_psql(server, db), "-c", "SELECT count(*) FROM events"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def _hold_lock(server: RestartablePostgres, db: str) -> subprocess.Popen[bytes]:
    """Another `etl ingest` as PostgreSQL sees it: a session holding the lock."""
    env = {**os.environ, "PGAPPNAME": "etl-ingest pid=4242 host=elsewhere"}
    holder = subprocess.Popen(
        [
            *_psql(server, db),
            *("-c", f"SELECT pg_advisory_lock({INGEST_LOCK_KEY})", "-c", "SELECT pg_sleep(120)"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sql = f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {INGEST_LOCK_KEY}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run([*_psql(server, db), "-c", sql], capture_output=True, text=True)
        if out.stdout.strip() == "1":
            return holder
        time.sleep(0.05)
    holder.kill()
    raise AssertionError("the holder never took the lock")
