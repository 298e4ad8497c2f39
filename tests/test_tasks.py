"""Task mode (`etl ingest --shard-index I --shard-count N`): the shares, the settings, the
exit codes an orchestrator retries on, and the locks that let tasks run side by side."""

from __future__ import annotations

import pytest

from etl import planner
from etl.errors import ConfigError, ExitCode, LockHeld, task_exit_code
from etl.models import Position
from etl.settings import Settings
from etl.sink.lock import IngestLock
from etl.sink.schema import PLANNING_LOCK_KEY
from etl.tasks import TaskShare, stable_index

DB = "postgresql://u@h/db"


def _plan_ids() -> list[str]:
    head = Position(1_800_000_000_000, "f" * 36)
    full = planner.full_plan(head, shards=16, span_ms=31 * planner.DAY_MS)
    inc = planner.incremental_plan(
        1_799_000_000_000, head, overlap_ms=1000, shards=4, events_per_ms=1.0
    )
    return [s.shard_id for s in [*full, *inc]] + ["repair-1799-1700"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 40])
def test_every_shard_belongs_to_exactly_one_task(count: int) -> None:
    """N tasks together load the whole plan, and no shard twice."""
    ids = _plan_ids()
    owners = {i: [t for t in range(count) if TaskShare(t, count).owns(i)] for i in ids}
    assert all(len(o) == 1 for o in owners.values()), owners


def test_a_full_plan_is_dealt_evenly() -> None:
    """16 shards over 3 tasks: 6, 5 and 5 (a task's share never depends on timing)."""
    ids = [s for s in _plan_ids() if s.startswith("full-")]
    sizes = [sum(TaskShare(t, 3).owns(i) for i in ids) for t in range(3)]
    assert sizes == [6, 5, 5]


def test_a_split_shard_stays_in_its_parents_share() -> None:
    """Work stealing splits a busy shard; the part split off (and its own splits) belongs to
    the same task, so a retried task finds it again and no other task takes it."""
    assert stable_index("full-07/1799999") == stable_index("full-07") == 7
    assert stable_index("full-07/1799999/1799000") == 7
    assert stable_index("repair-abc") == stable_index("repair-abc")  # no number: a CRC


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"shard_index": 0}, "needs --shard-count"),
        ({"shard_index": 3, "shard_count": 3}, "between 0 and 2"),
        ({"shard_count": 3}, "--shard-index must be"),
        ({"shard_index": 0, "shard_count": 0}, "--shard-count must be"),
        ({"shard_index": 0, "shard_count": 2, "database_url": None}, "needs --database-url"),
        ({"shard_index": 0, "shard_count": 2, "full_refresh": True}, "etl reset"),
    ],
)
def test_bad_task_settings_are_config_errors(kwargs: dict[str, object], says: str) -> None:
    """A task that cannot be a task is refused before any work (exit 2, not retried)."""
    values: dict[str, object] = {"api_url": None, "api_key": "", "database_url": DB}
    values.update(kwargs)
    with pytest.raises(ConfigError, match=says):
        Settings(**values)  # type: ignore[arg-type]


def test_task_settings_give_the_share() -> None:
    """Both numbers make a task; neither is a single-instance run."""
    s = Settings(api_url=None, api_key="", database_url=DB, shard_index=1, shard_count=4)
    assert s.share == TaskShare(1, 4)
    assert Settings(api_url=None, api_key="", database_url=DB).share is None


def test_a_task_exits_75_when_a_retry_can_cure_it() -> None:
    """Retry: stopped, API failing, database failing, share's lock held. Do not retry: auth,
    config, a different dataset, incomplete data, a bug."""
    retry = [ExitCode.PARTIAL, ExitCode.UPSTREAM, ExitCode.DATABASE, ExitCode.LOCKED]
    assert ExitCode.TEMPFAIL == 75
    assert {task_exit_code(c) for c in retry} == {75}
    keep = [
        ExitCode.OK,
        ExitCode.INTERNAL,
        ExitCode.CONFIG,
        ExitCode.AUTH,
        ExitCode.SOURCE_MISMATCH,
        ExitCode.INCOMPLETE,
    ]
    assert [task_exit_code(c) for c in keep] == keep


async def test_tasks_of_different_shares_run_together_the_same_share_once(db_url: str) -> None:
    """Shares 0 and 1 hold their locks at once; a second share 0 is refused, naming the
    share; a single-instance run (or `etl reset`) waits for no task and is refused too."""
    zero = IngestLock(db_url, share=TaskShare(0, 3))
    one = IngestLock(db_url, share=TaskShare(1, 3))
    await zero.acquire()
    await one.acquire()
    try:
        with pytest.raises(LockHeld, match="task 0 of 3"):
            await IngestLock(db_url, share=TaskShare(0, 3)).acquire()
        with pytest.raises(LockHeld, match="another etl ingest is running"):
            await IngestLock(db_url).acquire()
        assert not zero.exclusive  # other tasks' runs are alive: never marked crashed
    finally:
        await zero.release()
        await one.release()
    single = IngestLock(db_url)
    await single.acquire()
    try:
        assert single.exclusive
        with pytest.raises(LockHeld):
            await IngestLock(db_url, share=TaskShare(2, 3)).acquire()
    finally:
        await single.release()
    again = IngestLock(db_url, share=TaskShare(0, 3))
    await again.acquire()  # released locks are free again
    await again.release()


async def test_tasks_plan_one_at_a_time(db_url: str) -> None:
    """Two tasks starting together: the second waits on the planning lock until the first
    has planned (and recorded its plan), so the plan is made once."""
    import asyncio

    a = IngestLock(db_url, share=TaskShare(0, 2))
    b = IngestLock(db_url, share=TaskShare(1, 2))
    await a.acquire()
    await b.acquire()
    order: list[str] = []
    try:
        async with a.planning():
            waiting = asyncio.ensure_future(_plan(b, order))
            await _until_waiting(db_url)
            assert order == []
            order.append("a")
        await asyncio.wait_for(waiting, 10)
        assert order == ["a", "b"]
    finally:
        await a.release()
        await b.release()


async def _until_waiting(db_url: str) -> None:
    """Until a session waits for the planning lock (checked in pg_locks, within 10 s)."""
    import asyncio

    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        for _ in range(1000):  # the server's state, asked every 10 ms for at most 10 s
            if await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = $1",
                PLANNING_LOCK_KEY,
            ):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("nobody waited for the planning lock")
    finally:
        await conn.close()


async def _plan(lock: IngestLock, order: list[str]) -> None:
    async with lock.planning():
        order.append("b")


_WAIT_TO_PLAN = """
import asyncio, sys
from etl.sink.lock import IngestLock
from etl.tasks import TaskShare

async def main():
    lock = IngestLock(sys.argv[1], share=TaskShare(1, 2))
    await lock.acquire()
    async with lock.planning():
        pass

asyncio.run(main())
"""


async def test_a_task_killed_while_waiting_to_plan_leaves_its_share_to_its_successor(
    db_url: str,
) -> None:
    """Task 1 is SIGKILLed while it waits for task 0's planning (a restarted task does, and
    task 0's planning waits for the API's head). The dead task's backend stays blocked on
    the planning lock, the closed socket seen only once it is granted; its successor with
    the same index still takes the share at once, instead of being refused (exit 75, again
    after every retry) for as long as task 0 plans: the share's lock is not held by the
    connection that waits."""
    import asyncio
    import signal
    import sys

    planner_task = IngestLock(db_url, share=TaskShare(0, 2))
    successor = IngestLock(db_url, share=TaskShare(1, 2))
    await planner_task.acquire()
    try:
        async with planner_task.planning():
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _WAIT_TO_PLAN, db_url)
            try:
                await _until_waiting(db_url)
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            refused: list[str] = []
            for _ in range(500):  # its share, tried every 10 ms for at most 5 s
                try:
                    await successor.acquire()
                    break
                except LockHeld as exc:
                    refused.append(str(exc))
                    await asyncio.sleep(0.01)
            assert successor.held, refused[-1]
    finally:
        await planner_task.release()
        await successor.release()
