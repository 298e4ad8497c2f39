"""`etl ingest` as a user runs it: a real process, real sandbox, real PostgreSQL.

The sandbox runs in the test's event loop on the real clock; the ingest is a child process
(``python -m etl ingest``), so SIGKILL, exit codes and everything printed are real.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest

from etl.errors import ExitCode
from etl.sandbox import SystemClock
from tests.ingest_harness import loaded_ids

SECRET_KEY = "ds_5ecret5ecret5ecret5ecret5ecret00"


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "ETL_"))}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


async def etl(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "etl",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def run_etl(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await etl(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def slow_sandbox(sandbox: Any, events: int, latency_per_page: float = 0.5) -> Any:
    # ~0.1 s per 1000-event page: a run lasts long enough to be killed at several points
    return await sandbox(
        events=events,
        clock=SystemClock(),
        api_keys=(SECRET_KEY,),
        latency_per_page=latency_per_page,
        capacity=0,  # a constant latency: these runs are timed to be stopped part-way
        rate_limit=100_000,
        feed_throttle=100_000,
    )


def ingest_args(sb: Any, db_url: str, *extra: str) -> list[str]:
    return [
        "ingest",
        "--api-url",
        sb.base_url,
        "--database-url",
        db_url,
        "--page-size",
        "1000",
        "--shards",
        "4",
        "--log-format",
        "json",
        "--progress-interval",
        "0.1",
        *extra,
    ]


async def test_sigkill_at_several_points_then_rerun_is_exact(sandbox: Any, db_url: str) -> None:
    """kill -9 mid-run, three times; the fourth run ends with every id exactly once."""
    events = 40_000
    sb = await slow_sandbox(sandbox, events, latency_per_page=2.0)
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    for target in (1, events // 3, 2 * events // 3):
        proc = await etl(*ingest_args(sb, db_url), env=env)
        assert proc.stderr is not None
        loaded = 0
        while loaded < target:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, "the run ended before it could be killed"
            if line.startswith(b"{"):
                loaded = json.loads(line).get("loaded", loaded)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(await loaded_ids(db_url)) >= loaded
    code, output = await run_etl(*ingest_args(sb, db_url), env=env)
    assert code == 0, output
    ids = await loaded_ids(db_url)
    assert len(ids) == events
    assert set(ids) == set(sb.ids())
    assert "ingest complete" in output
    assert SECRET_KEY not in output


async def test_sigterm_commits_and_exits_partial(sandbox: Any, db_url: str) -> None:
    """SIGTERM: stop fetching, commit what is in flight, one summary line, exit 3."""
    sb = await slow_sandbox(sandbox, 40_000, latency_per_page=2.0)
    proc = await etl(*ingest_args(sb, db_url), env=env_for(DATASYNC_API_KEY=SECRET_KEY))
    assert proc.stderr is not None and proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line
        if line.startswith(b"{") and json.loads(line).get("loaded", 0) > 0:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == ExitCode.PARTIAL
    summary = out.decode().strip().splitlines()
    assert len(summary) == 1 and "SIGTERM" in summary[0] and "rerun to resume" in summary[0]
    assert 0 < len(await loaded_ids(db_url)) < 40_000


async def test_wrong_api_key_is_an_auth_error(sandbox: Any, db_url: str) -> None:
    """A rejected key says so and exits 4, without printing the key."""
    sb = await sandbox(api_keys=(SECRET_KEY,), clock=SystemClock())
    wrong = "ds_wrongwrongwrongwrongwrongwrong00"
    code, output = await run_etl(*ingest_args(sb, db_url), env=env_for(DATASYNC_API_KEY=wrong))
    assert code == ExitCode.AUTH, output
    assert "API key was rejected" in output
    assert wrong not in output and SECRET_KEY not in output


async def test_unreachable_database_is_a_database_error(sandbox: Any) -> None:
    """No database at the URL: after --db-wait, exit 6 and a clear message in words, without
    the password."""
    sb = await sandbox(api_keys=(SECRET_KEY,), clock=SystemClock())
    url = "postgresql://etl:Sup3rS3cretPw@127.0.0.1:1/etl"
    code, output = await run_etl(
        *ingest_args(sb, url, "--db-wait", "0.5"), env=env_for(DATASYNC_API_KEY=SECRET_KEY)
    )
    assert code == ExitCode.DATABASE, output
    assert "Sup3rS3cretPw" not in output
    assert "waiting for PostgreSQL at postgresql://etl:***@127.0.0.1:1/etl" in output
    assert "cannot connect to PostgreSQL at" in output and "connection refused" in output
    assert "Error" not in output  # words, not exception class names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--page-size", "0"], "--page-size must be between"),
        (["--strategy", "fastest"], "--strategy must be one of"),
        (["--api-url", "ftp://x"], "--api-url must look like"),
    ],
)
async def test_bad_configuration_exits_2(args: list[str], message: str) -> None:
    """Bad flags get a one-line message and the config exit code."""
    code, output = await run_etl(
        "ingest",
        "--database-url",
        "postgresql://x@127.0.0.1:1/x",
        *args,
        env=env_for(DATASYNC_API_KEY=SECRET_KEY),
    )
    assert code == ExitCode.CONFIG, output
    assert message in output


async def test_second_run_is_refused_while_one_holds_the_lock(sandbox: Any, db_url: str) -> None:
    """Two overlapping cron runs: the second exits 7 at once with a clear message."""
    sb = await slow_sandbox(sandbox, 40_000, latency_per_page=10.0)  # the first runs ~10 s
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    first = await etl(*ingest_args(sb, db_url), env=env)
    assert first.stderr is not None
    while True:  # wait until the first run is loading (it holds the lock by then)
        line = await asyncio.wait_for(first.stderr.readline(), 60)
        assert line
        if line.startswith(b"{") and json.loads(line).get("loaded", 0) > 0:
            break
    code, output = await run_etl(*ingest_args(sb, db_url), env=env)
    first.send_signal(signal.SIGTERM)
    await first.communicate()
    assert code == ExitCode.LOCKED, output
    assert "another etl ingest is running" in output
