"""Two `etl ingest` task processes on one API key and one real sandbox under its rate limits
(time-scaled): with the budget shared through PostgreSQL (the default in task mode) they stay
within the key's /events window together, the sandbox counting every 429, and load every id
once."""

from __future__ import annotations

from typing import Any

import asyncpg

from etl.sandbox import SystemClock
from tests.ingest_harness import loaded_ids
from tests.test_cli_ingest import SECRET_KEY, env_for, etl
from tests.test_tasks_cli import finish

TASKS = 2


def args(sb: Any, db_url: str, index: int, *extra: str) -> list[str]:
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
        "--shard-index",
        str(index),
        "--shard-count",
        str(TASKS),
        "--log-format",
        "json",
        *extra,
    ]


async def test_two_tasks_on_one_key_stay_within_its_limit_together(
    sandbox: Any, db_url: str
) -> None:
    """/events 10 per 6 s and a feed throttle of 20 per 30 s (x10): two tasks sharing the
    budget are refused by the /events limit not once (each alone would spend the window's
    10), by the hidden feed throttle only while learning it (one back-off with its probes,
    for both tasks), and load every id exactly once."""
    events = 40_000
    sb = await sandbox(
        events=events,
        clock=SystemClock(),
        api_keys=(SECRET_KEY,),
        time_scale=10.0,
        latency_per_page=1.0,
        capacity=0,
        feed_throttle=20,
    )
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    tasks = [await etl(*args(sb, db_url, i), env=env) for i in range(TASKS)]
    results = [await finish(p) for p in tasks]
    for code, output in results:
        assert code == 0, output
        assert SECRET_KEY not in output
    assert sb.stats.rate_limited.get("events", 0) == 0, sb.stats.rate_limited
    # learning the throttle: the first 429 and the probes refused while its window drains
    # (3, 4.5, 6.75, ... s apart with the spec's 300 s prior), once for both tasks
    assert sb.stats.rate_limited.get("feed", 0) <= 10, sb.stats.rate_limited
    ids = await loaded_ids(db_url)
    assert len(ids) == events and set(ids) == set(sb.ids())
    conn = await asyncpg.connect(db_url)
    try:
        holders = await conn.fetchval("SELECT count(DISTINCT holder) FROM rate_budget_log")
    finally:
        await conn.close()
    assert holders == TASKS  # both took slots from the one budget
