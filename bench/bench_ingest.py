"""End-to-end ingest benchmark: sandbox + PostgreSQL + ``etl ingest``, against issue 4's targets.

Starts PostgreSQL (an embedded one in a temp dir unless ``--database-url``) and the sandbox
(``python -m etl sandbox``) and runs ``python -m etl ingest`` as a separate process per
scenario, each on a fresh database (CREATE DATABASE / DROP). Per run it records events, wall
time, events/s, CPU seconds of the ingest process (user+sys from ``os.wait4``'s rusage), of
the sandbox and of PostgreSQL (psutil deltas), peak RSS of the ingest (``ru_maxrss``), and the
requests / 429s / retries of the run (its ``ingest_runs`` row). Scenarios:

    real-limits  sandbox under the real limits time-scaled (x10: rate limit 10/60 s, feed
                 throttle 200/300 s, 3.5 s per page, all divided by 10), ingest told
                 ``--feed-window 30``; events/s as a share of the budget bound
                 5000 * (10/60 + 200/300) * time_scale, and the 429 share of requests
    unthrottled  sandbox ``--unlimited``; then a pure-COPY baseline of the same rows in the
                 same run (binary COPY out, then timed binary COPY into an identical empty
                 table, on 1 and on 2 connections)
    dlt          the same unthrottled dataset through dlt's ``rest_api`` source
                 (bench/dlt_peer.py, own process), write disposition merge (and append)
    memory       peak RSS of the unthrottled ingest at 100k and at the full size
    status       ``etl status --json`` as a process (median of 5) and ``read_status(dsn)``
                 in-process (median of 20), on the unthrottled run's database

Prints one table and writes bench/results/ingest.json (``--quick``: ingest-quick.json).

    .venv/bin/python bench/bench_ingest.py                     # everything, 3M events
    .venv/bin/python bench/bench_ingest.py --quick             # 300k events, smoke run
    .venv/bin/python bench/bench_ingest.py --scenarios unthrottled status \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
API_KEY = "ds_sandbox_demo_key_0000000000000000"
PAGE = 5000
SCENARIOS = ("real-limits", "unthrottled", "dlt", "memory", "status")

# issue 4 / issue 5 targets
TARGET_BUDGET_SHARE = 0.92
TARGET_429_SHARE = 0.005
TARGET_COPY_RATIO = 0.6
TARGET_DLT_RATIO = 8.0
TARGET_RSS_MB = 200.0
TARGET_RSS_FLAT = 0.15
TARGET_STATUS_MS = 350.0

# env vars that would change what a child does behind our back
_SCRUB_PREFIXES = ("DATABASE_URL", "DATASYNC_", "ETL_", "SANDBOX_", "DESTINATION__", "DLT_")


# ---------------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int | None
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    stdout: str
    stderr: str
    timed_out: bool
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB) samples

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def tail(self, n: int = 800) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-n:]


class Children:
    """Every process this script starts, each in its own session; all killed on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> Any:
        out = open(log.with_suffix(".out"), "wb")  # noqa: SIM115 - closed by the caller
        err = open(log.with_suffix(".err"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # its own session: pgid == pid

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        if proc.returncode is None and proc.poll() is None:
            self.signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal_group(proc, signal.SIGKILL)
                proc.wait(10)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, grace_s=5.0)


def run_measured(
    children: Children,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout_s: float,
) -> ProcResult:
    """Run ``argv`` to completion; CPU and peak RSS from the rusage ``wait4`` returns."""
    t0 = time.perf_counter()
    proc = children.spawn(argv, cwd=cwd, env=env, log=log)
    timed_out = False
    samples: list[tuple[float, float]] = []
    next_sample = 0.0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter() - t0
        if now >= next_sample:
            next_sample = now + 0.25
            rss = vm_rss_mb(proc.pid)
            if rss is not None:
                samples.append((round(now, 2), rss))
        if time.perf_counter() - t0 > timeout_s:
            timed_out = True
            children.signal_group(proc, signal.SIGTERM)
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.1)
            else:
                children.signal_group(proc, signal.SIGKILL)
                pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    children.procs.remove(proc)
    return ProcResult(
        argv=list(argv),
        returncode=proc.returncode,
        wall_s=wall,
        user_s=ru.ru_utime,
        sys_s=ru.ru_stime,
        maxrss_mb=ru.ru_maxrss / 1024,  # Linux: KiB
        stdout=log.with_suffix(".out").read_text(errors="replace"),
        stderr=log.with_suffix(".err").read_text(errors="replace"),
        timed_out=timed_out,
        rss_mb=samples,
    )


def vm_rss_mb(pid: int) -> float | None:
    """The resident set of ``pid`` now (Linux /proc), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_over_time(samples: list[tuple[float, float]]) -> dict[str, float] | None:
    """RSS at 10/50/90 % of the run and the spread over its middle 80 % (flat = small)."""
    if len(samples) < 5:
        return None
    end = samples[-1][0]
    middle = [mb for t, mb in samples if 0.1 * end <= t <= 0.9 * end]
    if not middle:
        return None

    def at(share: float) -> float:
        return min(samples, key=lambda s: abs(s[0] - share * end))[1]

    return {
        "p10_mb": round(at(0.1), 1),
        "p50_mb": round(at(0.5), 1),
        "p90_mb": round(at(0.9), 1),
        "spread": round((max(middle) - min(middle)) / min(middle), 4),
    }


def child_env(src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    return env


def cpu_total(proc: psutil.Process, *, with_children: bool = False) -> float:
    """User+sys seconds of ``proc`` (+ its reaped children, + its live children)."""
    try:
        t = proc.cpu_times()
        total = float(t.user + t.system)
        if with_children:
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total
    except psutil.Error:
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# sandbox and PostgreSQL
# ---------------------------------------------------------------------------------------------


class Sandbox:
    """``python -m etl sandbox`` on a free loopback port, ready when GET /health answers."""

    def __init__(
        self, children: Children, work: Path, env: dict[str, str], events: int, args: list[str]
    ) -> None:
        self.children = children
        self.port = free_port()
        self.events = events
        self.args = args
        log = work / f"sandbox-{self.port}"
        argv = [sys.executable, "-m", "etl", "sandbox", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--events", str(events), *args]
        t0 = time.perf_counter()
        self.proc = children.spawn(argv, cwd=work, env=env, log=log)
        self.ps = psutil.Process(self.proc.pid)
        base = f"http://127.0.0.1:{self.port}"
        deadline = t0 + max(120.0, events / 20_000)
        while True:
            if self.proc.poll() is not None:
                err = log.with_suffix(".err").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"sandbox not healthy after {deadline - t0:.0f} s")
            time.sleep(0.1)
        self.startup_s = time.perf_counter() - t0
        self.api_url = base + "/api/v1"

    def cpu_s(self) -> float:
        return cpu_total(self.ps)

    def close(self) -> None:
        self.children.stop(self.proc)


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


class Postgres:
    """A server to create one database per scenario on (CREATE DATABASE / DROP ... FORCE)."""

    def __init__(self, server_url: str, data_dir: Path | None) -> None:
        self.server_url = server_url
        self.data_dir = data_dir
        self.version = ""

    def postmaster(self) -> psutil.Process | None:
        """The server's main process, when it is local and ours to read (embedded)."""
        if self.data_dir is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def cpu_s(self) -> float | None:
        pm = self.postmaster()
        return None if pm is None else cpu_total(pm, with_children=True)

    async def execute(self, sql: str, dsn: str | None = None) -> None:
        conn = await asyncpg.connect(dsn or self.server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self) -> tuple[str, str]:
        name = f"etl_bench_{secrets.token_hex(4)}"
        asyncio.run(self.execute(f'CREATE DATABASE "{name}"'))
        return name, with_db(self.server_url, name)

    def drop(self, name: str) -> None:
        asyncio.run(self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def checkpoint(self) -> None:
        asyncio.run(self.execute("CHECKPOINT"))

    def settings(self) -> dict[str, str]:
        async def go() -> dict[str, str]:
            conn = await asyncpg.connect(self.server_url)
            try:
                names = (
                    "server_version",
                    "shared_buffers",
                    "max_wal_size",
                    "synchronous_commit",
                    "fsync",
                )
                rows = await conn.fetch(
                    "SELECT name, setting, unit FROM pg_settings WHERE name = any($1)", names
                )
                return {r["name"]: f"{r['setting']}{r['unit'] or ''}" for r in rows}
            finally:
                await conn.close()

        return asyncio.run(go())


@contextlib.contextmanager
def database(pg: Postgres, keep: bool = False) -> Iterator[str]:
    name, dsn = pg.create()
    try:
        yield dsn
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                pg.drop(name)


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
            "SELECT status, inserted, requests, retries, rate_limited, cursor_resets,"
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


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------


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


def scenario_real_limits(ctx: Ctx) -> None:
    a = ctx.args
    scale = a.time_scale
    feed_window = 300.0 / scale
    sb_args = ["--time-scale", f"{scale:g}", "--latency-per-page", "3.5"]
    bound = PAGE * (10 / 60 + 200 / 300) * scale
    sandbox = Sandbox(ctx.children, ctx.work, ctx.env, ctx.events, sb_args)
    try:
        with database(ctx.pg) as dsn:
            timeout = a.timeout or max(300.0, 4 * ctx.events / bound)
            run = measure_ingest(
                ctx, "real-limits", sandbox, dsn, ["--feed-window", f"{feed_window:g}"], timeout
            )
    finally:
        sandbox.close()
    share = run.events_per_s / bound
    share_429 = (run.rate_limited or 0) / run.requests if run.requests else None
    run.extra = {
        "sandbox_args": sb_args,
        "ingest_args": ["--feed-window", f"{feed_window:g}"],
        "budget_bound_events_per_s": round(bound, 1),
        "budget_share": round(share, 4),
        "budget_share_in_run": round(run.run_events_per_s / bound, 4)
        if run.run_events_per_s
        else None,
        "share_429": None if share_429 is None else round(share_429, 5),
    }
    ctx.runs.append(run)
    ctx.results["real-limits"] = asdict(run)
    ctx.target("real limits: events/s ÷ budget bound", share, ">=", TARGET_BUDGET_SHARE, "%")
    ctx.target("real limits: 429s ÷ requests", share_429, "<=", TARGET_429_SHARE, "%")


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


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _f(value: float | int | None, fmt: str = ",.0f") -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return format(value, fmt)


def print_report(ctx: Ctx) -> None:
    head = (
        "run",
        "events",
        "wall s",
        "events/s",
        "CPU s",
        "sandbox",
        "postgres",
        "RSS MB",
        "requests",
        "429s",
        "retries",
    )
    w = (22, 10, 7, 9, 7, 8, 9, 7, 9, 6, 8)
    print()
    print(
        "  ".join(
            f"{h:>{n}}" if i else f"{h:<{n}}" for i, (h, n) in enumerate(zip(head, w, strict=True))
        )
    )
    for r in ctx.runs:
        cells = (
            r.label,
            _f(r.events),
            _f(r.wall_s, ".1f"),
            _f(r.events_per_s),
            _f(r.cpu_s, ".1f"),
            _f(r.sandbox_cpu_s, ".1f"),
            _f(r.postgres_cpu_s, ".1f"),
            _f(r.peak_rss_mb, ".0f"),
            _f(r.requests),
            _f(r.rate_limited),
            _f(r.retries),
        )
        print(
            "  ".join(
                f"{c:>{n}}" if i else f"{c:<{n}}"
                for i, (c, n) in enumerate(zip(cells, w, strict=True))
            )
        )
        if r.error:
            print(f"    ! {r.error[:300]}")
    print("    (CPU s: user+sys of the ingest process; sandbox / postgres: CPU s during the run)")
    rl = ctx.results.get("real-limits")
    if rl:
        e = rl["extra"]
        print(
            f"\nreal-limits: bound {e['budget_bound_events_per_s']:,.0f} events/s at "
            f"×{ctx.args.time_scale:g}; wall {e['budget_share']:.1%} of it, "
            f"in-run (ingest_runs start→end) {_f(e['budget_share_in_run'], '.1%')}"
        )
    un = ctx.results.get("unthrottled")
    if un and "copy_baseline" in un["extra"]:
        b = un["extra"]["copy_baseline"]
        if "error" in b:
            print(f"\nCOPY baseline failed: {b['error']}")
        else:
            print(
                f"\npure-COPY baseline ({b['rows']:,} rows, binary, into an empty copy of "
                f"events with its indexes): 1 connection {b['one_conn_rows_per_s']:,.0f} rows/s, "
                f"2 connections {b['two_conn_rows_per_s']:,.0f} rows/s"
            )
    dl = ctx.results.get("dlt")
    if dl and dl.get("reduced"):
        print(f"\ndlt ran on {dl['events']:,} events (--dlt-events); ratios use events/s")
    st = ctx.results.get("status")
    if st and "error" not in st:
        print(
            f"\nstatus on {st['rows']:,} rows: process median {st['process_ms_median']} ms "
            f"(python -c pass: {st['python_startup_ms_median']} ms), read_status median "
            f"{st['read_status_ms_median']} ms"
        )
    elif st:
        print(f"\nstatus failed: {st['error']}")
    print()
    print(f"{'target':<52} {'measured':>10} {'':>3} {'limit':>7}  result")
    for t in ctx.targets:
        v, lim, unit = t["value"], t["limit"], t["unit"]

        def show(x: float, unit: str = unit) -> str:
            if unit == "%":
                return f"{x:.1%}"
            if unit == "×":
                return f"{x:.2f}×"
            return f"{x:,.1f} {unit}".strip()

        vs = "–" if v is None else show(v)
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        note = f"  ({t['note']})" if t.get("note") else ""
        print(f"{t['target']:<52} {vs:>10} {t['op']:>3} {show(lim):>7}  {verdict}{note}")


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "etl"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        git["etl_dirty"] = bool(dirty.strip())
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "git": git,
    }


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--events", type=int, default=None, help="dataset size (default 3,000,000)")
    ap.add_argument("--database-url", help="server DSN (a role that may CREATE DATABASE)")
    ap.add_argument("--dlt-events", type=int, default=None, help="dlt dataset (default --events)")
    ap.add_argument(
        "--dlt-modes",
        nargs="+",
        choices=("merge", "append"),
        default=["merge", "append"],
        help="dlt write dispositions to run (the ratio uses merge)",
    )
    ap.add_argument("--memory-small", type=int, default=100_000, help="small size for memory")
    ap.add_argument("--time-scale", type=float, default=10.0, help="real-limits time scale")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per process")
    ap.add_argument("--quick", action="store_true", help="300k events everywhere: smoke run")
    ap.add_argument("--src", type=Path, default=None, help="run the etl package found here")
    ap.add_argument("--output", type=Path, default=None, help="JSON results file")
    args = ap.parse_args()
    if args.events is None:
        args.events = 300_000 if args.quick else 3_000_000
    if args.output is None:
        args.output = RESULTS_DIR / ("ingest-quick.json" if args.quick else "ingest.json")
    return args


def run_all(ctx: Ctx) -> None:
    selected = set(ctx.args.scenarios)

    def guarded(name: str, fn: Any, *fargs: Any) -> Any:
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", flush=True)
        try:
            return fn(*fargs)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            ctx.results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            print(f"    ! {name} failed: {type(exc).__name__}: {exc}", flush=True)
            return None

    if "real-limits" in selected:
        guarded("real-limits", scenario_real_limits, ctx)
    ours: Run | None = None
    if selected & {"unthrottled", "status", "memory"}:
        ours = guarded("unthrottled", scenario_unthrottled, ctx, selected)
    if "memory" in selected:
        guarded("memory", scenario_memory, ctx, ours)
    if "dlt" in selected:
        if ours is None:
            ours = guarded("unthrottled (for the dlt ratio)", scenario_unthrottled, ctx, set())
        guarded("dlt", scenario_dlt, ctx, ours)


def main() -> None:
    args = parse_args()
    if args.src is not None:
        args.src = args.src.resolve()
        sys.path.insert(0, str(args.src))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    children = Children()
    info = machine_info()
    info["etl_src"] = str(args.src or ROOT)
    work = Path(tempfile.mkdtemp(prefix="etl-bench-ingest-"))
    os.chmod(work, 0o755)  # the embedded server may run as another user (root → pgserver)
    started = time.perf_counter()
    ctx: Ctx | None = None
    try:
        with contextlib.ExitStack() as stack:
            if args.database_url:
                pg = Postgres(args.database_url, None)
            else:
                from etl.sink.embedded import EmbeddedPostgres

                data_dir = work / "pg"
                dsn = stack.enter_context(EmbeddedPostgres(data_dir, database="postgres"))
                pg = Postgres(dsn, data_dir)
            info["postgres"] = pg.settings() | {"embedded": args.database_url is None}
            ctx = Ctx(args, work, child_env(args.src), children, pg, args.events)
            stack.callback(ctx.close_sandboxes)
            try:
                run_all(ctx)
            except KeyboardInterrupt as exc:
                ctx.results["interrupted"] = str(exc) or "KeyboardInterrupt"
                print(f"interrupted ({exc}); reporting what was measured", flush=True)
    finally:
        children.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    if ctx is None:
        return
    info["loadavg_end"] = os.getloadavg()
    info["total_s"] = round(time.perf_counter() - started, 1)
    print_report(ctx)
    doc = {
        "benchmark": "ingest",
        "machine": info,
        "config": {
            "events": args.events,
            "scenarios": args.scenarios,
            "time_scale": args.time_scale,
            "dlt_events": args.dlt_events or args.events,
            "dlt_modes": args.dlt_modes,
            "memory_small": args.memory_small,
            "quick": args.quick,
            "database": "external" if args.database_url else "embedded (pgserver)",
            "copy_baseline": "binary COPY into an empty LIKE events INCLUDING ALL table; "
            "target judged on 2 connections (one id half each), 1 connection reported too",
        },
        "runs": [asdict(r) for r in ctx.runs],
        "scenarios": ctx.results,
        "targets": ctx.targets,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
