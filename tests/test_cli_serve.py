"""`etl serve` as a user starts it: a real process, a real port, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DATASYNC_"))}
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


def _etl(*args: str) -> list[str]:
    return [sys.executable, "-m", "etl", *args]


def test_open_bind_without_client_key_is_refused(tmp_path: Path) -> None:
    """--host 0.0.0.0 with no ETL_SERVE_API_KEY: exit 2 with one line saying what to set."""
    done = subprocess.run(
        _etl("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "ETL_SERVE_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_then_stops_cleanly_on_sigterm(db_url: str, tmp_path: Path) -> None:
    """The server answers /health, says it serves loopback only without a key, and SIGTERM
    ends it with exit 0 and no traceback."""
    port = _free_port()
    proc = subprocess.Popen(
        _etl("serve", "--port", str(port), "--data-dir", str(tmp_path)),
        env=_env(DATABASE_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # printed once the socket listens (or the error)
        assert "listening" in first, first
        assert "loopback only" in first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_workers_share_one_port_and_sum_their_counts(db_url: str, tmp_path: Path) -> None:
    """--workers 2: one listening line naming the workers, both answer on the one port,
    /metrics (whichever answers) counts every request of both and the number of workers,
    and SIGTERM stops them all with exit 0."""
    import re
    import time

    port = _free_port()
    proc = subprocess.Popen(
        _etl("serve", "--port", str(port), "--workers", "2", "--data-dir", str(tmp_path)),
        env=_env(DATABASE_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        assert "listening" in first and "2 workers" in first, first
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
                assert r.status == 200
        deadline = time.monotonic() + 20
        counted = -1
        while counted != 20 and time.monotonic() < deadline:  # others publish every second
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            found = re.search(
                r'etl_http_requests_total\{method="GET",route="/status",status="200"\} (\d+)',
                text,
            )
            counted = int(found.group(1)) if found else 0
        assert counted == 20
        assert "etl_serve_workers 2" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_a_migration_longer_than_the_statement_timeout_is_applied(
    db_url: str, tmp_path: Path
) -> None:
    """Started on a database one step behind whose step builds an index over the events,
    `etl serve` applies it even when that takes longer than the requests' statement timeout
    (100 ms here), and says no warning."""
    import asyncio

    import asyncpg

    from etl.sink.schema import SCHEMA_VERSION, migrate

    async def behind() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO events (id, user_id, type, occurred_at, properties, timestamp_raw)"
                " SELECT gen_random_uuid(), gen_random_uuid(), 'page_view',"
                " now() - k * interval '1 second', '{}', '' FROM generate_series(1, 400000) k"
            )
            await conn.execute("DROP INDEX events_user_time_idx")
            # step 11 builds the index; the later steps are applied again after it
            await conn.execute("DELETE FROM schema_version WHERE version >= 11")
        finally:
            await conn.close()

    async def version() -> int:
        conn = await asyncpg.connect(db_url)
        try:
            return int(await conn.fetchval("SELECT max(version) FROM schema_version"))
        finally:
            await conn.close()

    asyncio.run(behind())
    port = _free_port()
    proc = subprocess.Popen(
        _etl("serve", "--port", str(port), "--workers", "1", "--statement-timeout-ms", "100"),
        env=_env(DATABASE_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        assert "listening" in first, first
        assert asyncio.run(version()) == SCHEMA_VERSION
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "warning" not in first + err
