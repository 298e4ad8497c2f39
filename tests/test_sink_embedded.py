"""The embedded PostgreSQL (pgserver): starts, serves a DSN asyncpg accepts, keeps its data."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from etl.errors import SinkError
from etl.models import ShardState
from etl.sink import EmbeddedPostgres, PostgresSink
from etl.source.datasync import EVENTS


async def _count_shards(dsn: str) -> int:
    async with PostgresSink(dsn, stream=EVENTS) as sink:
        return len(await sink.load_shards())


async def test_embedded_starts_reuses_data_and_stops(tmp_path: Path) -> None:
    """The embedded PostgreSQL starts in the data dir, keeps its data across restarts and stops
    afterwards."""
    data_dir = tmp_path / "pg"
    async with EmbeddedPostgres(data_dir) as dsn:
        assert dsn.startswith("postgresql://") and "/etl?" in dsn
        async with PostgresSink(dsn, stream=EVENTS) as sink:
            await sink.add_shards([ShardState("s1", None, None)])
        # a second handle in the same process shares the server ...
        with EmbeddedPostgres(data_dir) as dsn2:
            assert dsn2 == dsn
        # ... and leaving it does not stop the server under the first one
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("SELECT current_database()") == "etl"
        await conn.close()
    assert not (data_dir / "postmaster.pid").exists()  # stopped with the last handle

    async with EmbeddedPostgres(data_dir) as dsn:  # rerun: same data
        assert await _count_shards(dsn) == 1


def test_embedded_cannot_start(tmp_path: Path) -> None:
    """A data dir that cannot be created is a clear SinkError."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SinkError, match="cannot start the embedded PostgreSQL"):
        EmbeddedPostgres(blocker / "pg").start()


def test_server_left_by_killed_process_is_reused_then_stopped(tmp_path: Path) -> None:
    """An embedded server a killed process left running is reused by the next, then stopped."""
    import os
    import signal
    import subprocess
    import sys

    data_dir = tmp_path / "pg"
    code = (
        "import sys, time; from pathlib import Path; from etl.sink import EmbeddedPostgres; "
        "EmbeddedPostgres(Path(sys.argv[1])).start(); print('up', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert (data_dir / "postmaster.pid").exists()  # the server outlived its owner
    with EmbeddedPostgres(data_dir) as dsn:
        assert dsn
    assert not (data_dir / "postmaster.pid").exists()  # the dead owner did not pin it
