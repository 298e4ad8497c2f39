"""A Kubernetes Indexed Job, simulated on this machine: N `etl ingest` processes that know
only ``JOB_COMPLETION_INDEX`` and ``ETL_SHARD_COUNT``, one real sandbox, one real PostgreSQL.
A task is SIGKILLed mid-run and started again with the same index, as the Job's controller
does; a duplicate of a running index is refused with the retry code."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from etl.errors import ExitCode
from tests.ingest_harness import loaded_ids
from tests.test_cli_ingest import SECRET_KEY, env_for, etl, slow_sandbox

TASKS = 3


def task_args(sb: Any, db_url: str) -> list[str]:
    return [
        "ingest",
        "--api-url",
        sb.base_url,
        "--database-url",
        db_url,
        "--page-size",
        "1000",
        "--shards",
        "6",
        "--log-format",
        "json",
        "--progress-interval",
        "0.1",
    ]


def task_env(index: int) -> dict[str, str]:
    return env_for(
        DATASYNC_API_KEY=SECRET_KEY,
        ETL_SHARD_COUNT=str(TASKS),
        JOB_COMPLETION_INDEX=str(index),
    )


async def first_progress(proc: asyncio.subprocess.Process) -> None:
    """Until the task prints its first progress line (it holds its share's lock by then)."""
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, "the task ended before it made progress"
        if line.startswith(b"{") and "loaded" in json.loads(line):
            return


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_an_indexed_job_with_a_killed_task_loads_every_id_once(
    sandbox: Any, db_url: str
) -> None:
    """3 tasks, one killed with SIGKILL and restarted with its index, a duplicate index
    refused with 75 (retry later): every task ends 0 and the table holds each id once."""
    events = 30_000
    sb = await slow_sandbox(sandbox, events, latency_per_page=5.0)  # ~1 s per page
    tasks = [await etl(*task_args(sb, db_url), env=task_env(i)) for i in range(TASKS)]
    await first_progress(tasks[1])
    tasks[1].send_signal(signal.SIGKILL)
    await tasks[1].wait()
    assert tasks[1].returncode == -signal.SIGKILL

    await first_progress(tasks[0])
    # Task 0 is frozen while its twin starts, so it still holds its share's lock however
    # slowly the twin starts on a loaded machine (it could otherwise finish its share first).
    tasks[0].send_signal(signal.SIGSTOP)
    try:
        twin = await etl(*task_args(sb, db_url), env=task_env(0))
        code, output = await finish(twin)
    finally:
        tasks[0].send_signal(signal.SIGCONT)
    assert code == ExitCode.TEMPFAIL, output
    assert "task 0 of 3" in output

    tasks[1] = await etl(*task_args(sb, db_url), env=task_env(1))  # the controller's retry
    results = [await finish(p) for p in tasks]
    for code, output in results:
        assert code == 0, output
        assert SECRET_KEY not in output
    ids = await loaded_ids(db_url)
    assert len(ids) == events
    assert set(ids) == set(sb.ids())
    summaries = [o for _, o in results if "ingest complete" in o]
    assert len(summaries) == TASKS
    # the task that finished last found every shard done and judged the whole dataset
    assert any("its share is done" not in o for o in summaries)


async def test_a_task_whose_database_is_down_asks_to_be_retried() -> None:
    """A database that refuses connections is exit 6 for a single run; as a task it is 75,
    so the orchestrator retries it (the error line says what happened)."""
    env = task_env(1) | {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/etl"}
    proc = await etl("ingest", "--api-url", "http://127.0.0.1:1/api/v1", "--db-wait", "0", env=env)
    code, output = await finish(proc)
    assert code == ExitCode.TEMPFAIL, output
    assert "PostgreSQL" in output and SECRET_KEY not in output
