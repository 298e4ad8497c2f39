"""One measured `etl ingest` run and the context the scenarios share."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from ingestkit.common import API_KEY
from ingestkit.procs import Children, rss_over_time, run_measured
from ingestkit.services import Postgres, Sandbox

# ---------------------------------------------------------------------------------------------
# one ingest run
# ---------------------------------------------------------------------------------------------

_SUMMARY = re.compile(
    r"(?P<requests>[\d,]+) requests, (?P<retries>[\d,]+) retries, (?P<rate_limited>[\d,]+)×429"
)


@dataclass
class Run:
    label: str
    expected: int
    events: int = 0  # rows in the events table afterwards
    inserted: int = 0
    wall_s: float = 0.0
    events_per_s: float = 0.0
    run_s: float | None = None  # ingest_runs.started_at .. ended_at
    run_events_per_s: float | None = None
    cpu_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    sandbox_cpu_s: float | None = None
    postgres_cpu_s: float | None = None
    peak_rss_mb: float = 0.0
    requests: int | None = None
    rate_limited: int | None = None
    retries: int | None = None
    cursor_resets: int | None = None
    status: str | None = None
    exit_code: int | None = None
    summary: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def read_run_row(dsn: str) -> tuple[dict[str, Any] | None, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT status, inserted, requests, retries, rate_limited, cursor_resets, extra,"
            " extract(epoch FROM ended_at - started_at)::float8 AS run_s"
            " FROM ingest_runs ORDER BY run_id DESC LIMIT 1"
        )
        count = await conn.fetchval("SELECT count(*) FROM events")
        return (dict(row) if row else None), int(count)
    finally:
        await conn.close()


def measure_ingest(
    ctx: Ctx,
    label: str,
    sandbox: Sandbox,
    dsn: str,
    extra_args: Sequence[str],
    timeout_s: float,
) -> Run:
    run = Run(label=label, expected=sandbox.events)
    data_dir = ctx.work / f"data-{label}"
    argv = [sys.executable, "-m", "etl", "ingest", "--api-url", sandbox.api_url]
    argv += ["--api-key", API_KEY, "--database-url", dsn, "--data-dir", str(data_dir)]
    argv += ["--quiet", *extra_args]
    ctx.pg.checkpoint()
    sb0, pg0 = sandbox.cpu_s(), ctx.pg.cpu_s()
    res = run_measured(
        ctx.children, argv, cwd=ctx.work, env=ctx.env, log=ctx.work / label, timeout_s=timeout_s
    )
    sb1, pg1 = sandbox.cpu_s(), ctx.pg.cpu_s()
    run.wall_s = res.wall_s
    run.cpu_user_s, run.cpu_sys_s, run.cpu_s = res.user_s, res.sys_s, res.cpu_s
    run.peak_rss_mb = res.maxrss_mb
    run.extra["rss_over_time"] = rss_over_time(res.rss_mb)
    run.sandbox_cpu_s = sb1 - sb0
    run.postgres_cpu_s = None if pg0 is None or pg1 is None else pg1 - pg0
    run.exit_code = res.returncode
    run.summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if res.timed_out:
        run.error = f"timed out after {timeout_s:.0f} s"
    elif res.returncode != 0:
        run.error = f"exit {res.returncode}: {res.tail()}"
    row, count = asyncio.run(read_run_row(dsn))
    run.events = count
    if row is not None:
        run.status = row["status"]
        run.inserted = int(row["inserted"])
        run.requests, run.retries = int(row["requests"]), int(row["retries"])
        run.rate_limited, run.cursor_resets = int(row["rate_limited"]), int(row["cursor_resets"])
        extra = row["extra"]
        run.extra["run_extra"] = json.loads(extra) if isinstance(extra, str) else extra
        if row["run_s"]:
            run.run_s = float(row["run_s"])
            run.run_events_per_s = run.inserted / run.run_s
    elif m := _SUMMARY.search(run.summary):
        run.requests = int(m["requests"].replace(",", ""))
        run.retries = int(m["retries"].replace(",", ""))
        run.rate_limited = int(m["rate_limited"].replace(",", ""))
    run.events_per_s = run.events / run.wall_s if run.wall_s else 0.0
    if run.error is None and run.events != run.expected:
        run.error = f"loaded {run.events:,} of {run.expected:,} events"
    return run


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    children: Children
    pg: Postgres
    events: int
    results: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    unlimited: dict[int, Sandbox] = field(default_factory=dict)

    def target(
        self, name: str, value: float | None, op: str, limit: float, unit: str = "", note: str = ""
    ) -> None:
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        self.targets.append(
            {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}
            | ({"note": note} if note else {})
        )

    def unlimited_sandbox(self, events: int) -> Sandbox:
        """Unthrottled sandboxes hold no limit state: one per dataset size, shared."""
        if events not in self.unlimited:
            self.unlimited[events] = Sandbox(
                self.children, self.work, self.env, events, ["--unlimited"]
            )
        return self.unlimited[events]

    def close_sandboxes(self) -> None:
        for sb in self.unlimited.values():
            sb.close()
        self.unlimited.clear()
