"""`etl reset`: what it forgets, what it keeps, and when it refuses (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import threading

from etl.errors import ExitCode
from etl.sink import IngestLock
from tests.fixtures_db import run_sync
from tests.ingest_harness import query
from tests.test_cli_ops import invoke, populate


def count(db_url: str, sql: str) -> int:
    return int(run_sync(query(db_url, sql))[0][0])


def test_reset_refuses_without_yes_when_it_cannot_ask(db_url: str) -> None:
    """A script (stdin not a terminal) must say --yes: exit 2, nothing changed."""
    run_sync(populate(db_url))
    result = invoke(["reset"], {"DATABASE_URL": db_url})
    assert result.exit_code == ExitCode.CONFIG
    assert "--yes" in result.output and "not a terminal" in result.output
    assert count(db_url, "SELECT count(*) FROM ingest_progress") == 2


def test_reset_forgets_the_state_and_keeps_the_rows(db_url: str) -> None:
    """Every shard and the source identity are forgotten; loaded events stay in the table
    and still count in `etl status`."""
    run_sync(populate(db_url))
    result = invoke(["reset", "--yes"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "keep the 8 loaded events" in result.output
    assert "re-reads the whole source" in result.output
    assert count(db_url, "SELECT count(*) FROM ingest_progress") == 0
    assert count(db_url, "SELECT count(*) FROM events") == 8
    status = json.loads(invoke(["status", "--json"], {"DATABASE_URL": db_url}).stdout)
    assert status["events"]["loaded"] == 8


def test_reset_of_named_shards(db_url: str) -> None:
    """--shard starts one shard over (pending, from its upper bound) and leaves the others;
    an unknown shard is a clear error, exit 2."""
    run_sync(populate(db_url))
    result = invoke(["reset", "--shard", "b", "--yes"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    rows = run_sync(query(db_url, "SELECT shard_id, status, position_ts FROM ingest_progress"))
    state = {r["shard_id"]: (r["status"], r["position_ts"]) for r in rows}
    assert state["b"] == ("pending", None) and state["a"][0] == "running"
    assert count(db_url, "SELECT events FROM ingest_totals") == 8  # b's 3 still count
    result = invoke(["reset", "--shard", "zz", "--yes"], {"DATABASE_URL": db_url})
    assert result.exit_code == ExitCode.CONFIG and "no shard zz" in result.output


def test_drop_data_deletes_the_rows_only_when_asked(db_url: str) -> None:
    """--drop-data --yes empties the events table and the state; it refuses --shard."""
    run_sync(populate(db_url))
    result = invoke(["reset", "--drop-data", "--shard", "a", "--yes"], {"DATABASE_URL": db_url})
    assert result.exit_code == ExitCode.CONFIG
    assert count(db_url, "SELECT count(*) FROM events") == 8
    result = invoke(["reset", "--drop-data", "--yes"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "deleted 8 loaded events" in result.output
    assert count(db_url, "SELECT count(*) FROM events") == 0
    assert count(db_url, "SELECT events FROM ingest_totals") == 0
    assert count(db_url, "SELECT count(*) FROM ingest_runs") == 1  # history stays


def test_reset_waits_for_no_ingest(db_url: str) -> None:
    """While an ingest holds the lock, reset changes nothing and exits 7."""
    run_sync(populate(db_url))
    held, done = threading.Event(), threading.Event()

    async def hold_lock() -> None:  # as a running `etl ingest` does, in its own thread
        lock = IngestLock(db_url)
        await lock.acquire()
        held.set()
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        await lock.release()

    holder = threading.Thread(target=run_sync, args=(hold_lock(),))
    holder.start()
    try:
        assert held.wait(30)
        result = invoke(["reset", "--yes"], {"DATABASE_URL": db_url})
    finally:
        done.set()
        holder.join()
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "another etl ingest is running" in result.output
    assert count(db_url, "SELECT count(*) FROM ingest_progress") == 2


def _reset_on_a_terminal(db_url: str, answer: bytes) -> tuple[int, str]:
    parent, child = pty.openpty()
    env = {**os.environ, "DATABASE_URL": db_url, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "reset"],
        stdin=child,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    os.close(child)
    os.write(parent, answer)
    out, _ = proc.communicate(timeout=60)
    os.close(parent)
    return proc.returncode, out.decode()


def test_reset_asks_on_a_terminal(db_url: str) -> None:
    """On a terminal it lists what it will do and asks; "n" changes nothing, "y" resets."""
    run_sync(populate(db_url))
    code, output = _reset_on_a_terminal(db_url, b"n\n")
    assert code == 0 and "Proceed?" in output and "nothing changed" in output
    assert count(db_url, "SELECT count(*) FROM ingest_progress") == 2
    code, output = _reset_on_a_terminal(db_url, b"y\n")
    assert code == 0 and "forgotten" in output, output
    assert count(db_url, "SELECT count(*) FROM ingest_progress") == 0
