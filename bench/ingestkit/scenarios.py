"""Scenarios: unthrottled (with the pure-COPY baseline), memory, dlt, status (and ``latency``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg

from ingestkit.common import (
    API_KEY,
    PAGE,
    ROOT,
    TARGET_COPY_RATIO,
    TARGET_DLT_RATIO,
    TARGET_RSS_FLAT,
    TARGET_RSS_MB,
    TARGET_STATUS_MS,
)
from ingestkit.procs import run_measured
from ingestkit.runs import Ctx, Run, measure_ingest
from ingestkit.services import Sandbox, database

# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------


async def copy_baseline(dsn: str, work: Path) -> dict[str, Any]:
    """Binary COPY of the loaded rows into an identical empty table, on 1 and 2 connections."""
    split = "80000000-0000-0000-0000-000000000000"
    halves = [work / "baseline-a.bin", work / "baseline-b.bin"]
    conn = await asyncpg.connect(dsn)
    conn2 = await asyncpg.connect(dsn)
    out: dict[str, Any] = {}
    try:
        await conn.execute("DROP TABLE IF EXISTS events_baseline")
        await conn.execute("CREATE TABLE events_baseline (LIKE events INCLUDING ALL)")
        t = time.perf_counter()
        await conn.copy_from_query(
            f"SELECT * FROM events WHERE id < '{split}'", output=halves[0], format="binary"
        )
        await conn.copy_from_query(
            f"SELECT * FROM events WHERE id >= '{split}'", output=halves[1], format="binary"
        )
        out["copy_out_s"] = round(time.perf_counter() - t, 3)
        out["binary_bytes"] = sum(p.stat().st_size for p in halves)
        rows = int(await conn.fetchval("SELECT count(*) FROM events"))
        out["rows"] = rows

        # one connection: both halves one after the other
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        for path in halves:
            await conn.copy_to_table("events_baseline", source=path, format="binary")
        s1 = time.perf_counter() - t
        assert await conn.fetchval("SELECT count(*) FROM events_baseline") == rows

        # two connections: one half each, concurrently
        await conn.execute("TRUNCATE events_baseline")
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        await asyncio.gather(
            conn.copy_to_table("events_baseline", source=halves[0], format="binary"),
            conn2.copy_to_table("events_baseline", source=halves[1], format="binary"),
        )
        s2 = time.perf_counter() - t
        assert await conn.fetchval("SELECT count(*) FROM events_baseline") == rows
        out |= {
            "one_conn_s": round(s1, 3),
            "one_conn_rows_per_s": round(rows / s1, 1),
            "two_conn_s": round(s2, 3),
            "two_conn_rows_per_s": round(rows / s2, 1),
        }
        await conn.execute("DROP TABLE events_baseline")
    finally:
        await conn.close()
        await conn2.close()
        for path in halves:
            path.unlink(missing_ok=True)
    return out


def status_timings(ctx: Ctx, dsn: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "etl", "status", "--json", "--database-url", dsn]
    walls: list[float] = []
    loaded = None
    for i in range(5):
        res = run_measured(
            ctx.children,
            argv,
            cwd=ctx.work,
            env=ctx.env,
            log=ctx.work / f"status-{i}",
            timeout_s=60,
        )
        if res.returncode != 0:
            raise RuntimeError(f"etl status failed: {res.tail()}")
        walls.append(res.wall_s)
        loaded = json.loads(res.stdout)["events"]["loaded"]
    bare: list[float] = []
    for i in range(5):
        res = run_measured(
            ctx.children,
            [sys.executable, "-c", "pass"],
            cwd=ctx.work,
            env=ctx.env,
            log=ctx.work / f"python-{i}",
            timeout_s=60,
        )
        bare.append(res.wall_s)

    sys.path.insert(0, str(ctx.args.src or ROOT))
    from etl.read.status import read_status

    async def in_process() -> list[float]:
        out = []
        await read_status(dsn)  # warm-up: imports, codecs
        for _ in range(20):
            t = time.perf_counter()
            await read_status(dsn)
            out.append(time.perf_counter() - t)
        return out

    inproc = asyncio.run(in_process())
    return {
        "rows": loaded,
        "process_ms_median": round(statistics.median(walls) * 1000, 1),
        "process_ms_all": [round(w * 1000, 1) for w in walls],
        "python_startup_ms_median": round(statistics.median(bare) * 1000, 1),
        "read_status_ms_median": round(statistics.median(inproc) * 1000, 2),
        "read_status_ms_max": round(max(inproc) * 1000, 2),
    }


def scenario_unthrottled(ctx: Ctx, selected: set[str]) -> Run:
    """The unthrottled ingest; its database also serves the baseline and the status timing."""
    a = ctx.args
    sandbox = ctx.unlimited_sandbox(ctx.events)
    with database(ctx.pg) as dsn:
        timeout = a.timeout or max(300.0, ctx.events / 5_000)
        run = measure_ingest(ctx, "unthrottled", sandbox, dsn, [], timeout)
        run.extra["sandbox_startup_s"] = round(sandbox.startup_s, 2)
        ctx.runs.append(run)
        if "unthrottled" in selected:
            try:
                base = asyncio.run(copy_baseline(dsn, ctx.work))
            except Exception as exc:
                base = {"error": f"{type(exc).__name__}: {exc}"}
            run.extra["copy_baseline"] = base
            if "two_conn_rows_per_s" in base:
                r2 = run.events_per_s / base["two_conn_rows_per_s"]
                r1 = run.events_per_s / base["one_conn_rows_per_s"]
                run.extra["ratio_vs_copy_2conn"] = round(r2, 3)
                run.extra["ratio_vs_copy_1conn"] = round(r1, 3)
                ctx.target(
                    "unthrottled: ÷ pure-COPY baseline (2 conns)",
                    r2,
                    ">=",
                    TARGET_COPY_RATIO,
                    "×",
                    note=f"vs 1 connection: {r1:.2f}",
                )
            ctx.results["unthrottled"] = asdict(run)
        if "status" in selected:
            try:
                st = status_timings(ctx, dsn)
            except Exception as exc:
                st = {"error": f"{type(exc).__name__}: {exc}"}
            ctx.results["status"] = st
            ctx.target(
                "status: `etl status --json` process, median of 5",
                st.get("process_ms_median"),
                "<=",
                TARGET_STATUS_MS,
                "ms",
                note=f"python -c pass: {st.get('python_startup_ms_median')} ms",
            )
            ctx.target(
                "status: read_status(dsn) in-process, median of 20",
                st.get("read_status_ms_median"),
                "<=",
                TARGET_STATUS_MS,
                "ms",
            )
    return run


def scenario_memory(ctx: Ctx, big: Run | None) -> None:
    small_n = min(ctx.args.memory_small, ctx.events)
    sandbox = ctx.unlimited_sandbox(small_n)
    with database(ctx.pg) as dsn:
        small = measure_ingest(ctx, f"memory-{small_n}", sandbox, dsn, [], ctx.args.timeout or 300)
    ctx.runs.append(small)
    if big is None:
        big = scenario_unthrottled(ctx, set())
    drift = (big.peak_rss_mb - small.peak_rss_mb) / small.peak_rss_mb
    ctx.results["memory"] = {
        "small": asdict(small),
        "small_events": small.events,
        "small_peak_rss_mb": round(small.peak_rss_mb, 1),
        "big_events": big.events,
        "big_peak_rss_mb": round(big.peak_rss_mb, 1),
        "drift": round(drift, 4),
    }
    peak = max(small.peak_rss_mb, big.peak_rss_mb)
    ctx.target("memory: peak RSS of the ingest", peak, "<=", TARGET_RSS_MB, "MB")
    ctx.target(
        f"memory: RSS drift {small.events:,} → {big.events:,} events",
        abs(drift),
        "<=",
        TARGET_RSS_FLAT,
        "%",
        note=f"{small.peak_rss_mb:.0f} → {big.peak_rss_mb:.0f} MB",
    )
    over_time = big.extra.get("rss_over_time")
    if over_time:
        ctx.results["memory"]["big_rss_over_time"] = over_time
        ctx.target(
            f"memory: RSS spread over the {big.events:,}-event run (10 %→90 % of its time)",
            over_time["spread"],
            "<=",
            TARGET_RSS_FLAT,
            "%",
            note=f"{over_time['p10_mb']:.0f} / {over_time['p50_mb']:.0f} / "
            f"{over_time['p90_mb']:.0f} MB at 10/50/90 %",
        )


def measure_dlt(ctx: Ctx, sandbox: Sandbox, disposition: str, timeout_s: float) -> Run:
    run = Run(label=f"dlt-{disposition}", expected=sandbox.events)
    with database(ctx.pg) as dsn:
        argv = [sys.executable, str(ROOT / "bench" / "dlt_peer.py"), "--api-url", sandbox.api_url]
        argv += ["--api-key", API_KEY, "--database-url", dsn, "--write-disposition", disposition]
        argv += ["--pipelines-dir", str(ctx.work / f"dlt-{disposition}")]
        ctx.pg.checkpoint()
        sb0, pg0 = sandbox.cpu_s(), ctx.pg.cpu_s()
        res = run_measured(
            ctx.children,
            argv,
            cwd=ctx.work,
            env=ctx.env,
            log=ctx.work / f"dlt-{disposition}",
            timeout_s=timeout_s,
        )
        sb1, pg1 = sandbox.cpu_s(), ctx.pg.cpu_s()
    shutil.rmtree(ctx.work / f"dlt-{disposition}", ignore_errors=True)
    run.wall_s, run.cpu_s = res.wall_s, res.cpu_s
    run.cpu_user_s, run.cpu_sys_s = res.user_s, res.sys_s
    run.peak_rss_mb, run.exit_code = res.maxrss_mb, res.returncode
    run.sandbox_cpu_s = sb1 - sb0
    run.postgres_cpu_s = None if pg0 is None or pg1 is None else pg1 - pg0
    run.requests = -(-sandbox.events // PAGE)  # one cursor chain: one request per page
    if res.timed_out:
        run.error = f"timed out after {timeout_s:.0f} s"
    elif res.returncode != 0:
        run.error = f"exit {res.returncode}: {res.tail()}"
    else:
        info = json.loads(res.stdout.strip().splitlines()[-1])
        run.events = run.inserted = int(info["rows"])
        run.extra = info
        run.events_per_s = run.events / run.wall_s
        if run.events != run.expected:
            run.error = f"loaded {run.events:,} of {run.expected:,} events"
    return run


def scenario_dlt(ctx: Ctx, ours: Run | None) -> None:
    a = ctx.args
    n = a.dlt_events or ctx.events
    sandbox = ctx.unlimited_sandbox(n)
    timeout = a.timeout or max(900.0, n / 1_000)
    out: dict[str, Any] = {"events": n, "reduced": n != ctx.events}
    for disposition in a.dlt_modes:
        run = measure_dlt(ctx, sandbox, disposition, timeout)
        ctx.runs.append(run)
        out[disposition] = asdict(run)
    ctx.results["dlt"] = out
    merge = out.get("merge")
    if ours is not None and merge and merge["events_per_s"]:
        ratio = ours.events_per_s / merge["events_per_s"]
        out["ratio_ours_vs_dlt_merge"] = round(ratio, 2)
        note = f"dlt on {n:,} events" if n != ctx.events else ""
        if "append" in out and out["append"]["events_per_s"]:
            out["ratio_ours_vs_dlt_append"] = round(
                ours.events_per_s / out["append"]["events_per_s"], 2
            )
            note = (note + "; " if note else "") + f"vs append: {out['ratio_ours_vs_dlt_append']}×"
        ctx.target("unthrottled: ÷ dlt rest_api (merge)", ratio, ">=", TARGET_DLT_RATIO, "×", note)
