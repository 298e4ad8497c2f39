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
    """/events 10 per 6 s and the feed's throttle 200 per 30 s (x10): two tasks sharing the
    budget are refused not once (each alone would spend the window's 10 of /events), and
    load every id exactly once. (Learning a throttle is tested with an injected clock in
    test_sharedrate: its 429s depend on timing.)"""
    events = 40_000
    sb = await sandbox(
        events=events,
        clock=SystemClock(),
        api_keys=(SECRET_KEY,),
        time_scale=10.0,
        latency_per_page=1.0,
        capacity=0,
    )
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    tasks = [await etl(*args(sb, db_url, i), env=env) for i in range(TASKS)]
    results = [await finish(p) for p in tasks]
    for code, output in results:
        assert code == 0, output
        assert SECRET_KEY not in output
    assert sum(sb.stats.rate_limited.values()) == 0, sb.stats.rate_limited
    ids = await loaded_ids(db_url)
    assert len(ids) == events and set(ids) == set(sb.ids())
    conn = await asyncpg.connect(db_url)
    try:
        holders = await conn.fetchval("SELECT count(DISTINCT holder) FROM rate_budget_log")
    finally:
        await conn.close()
    assert holders == TASKS  # both took slots from the one budget
