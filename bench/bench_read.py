"""Read-side benchmark: every read command on a 3M-event table, as a user runs it.

Loads the sandbox's dataset (``--events``, default 3,000,000) with ``etl ingest`` from an
unthrottled sandbox into database ``etl_bench_read`` on ``--database-url``'s server (an
embedded PostgreSQL in a temp dir without it), unless that database already holds the
events (``--keep`` leaves it for the next run). Then, per command:

    process  ``python -m etl <command>`` as a separate process, wall time, median of
             ``--reps`` (default 7) after one warm-up: what a user waits for, start-up
             and imports included (target < 350 ms, goal 150 ms)
    in-proc  the ``etl.read`` function the command calls, in-process on an open connection,
             median of 20: the database part (target < 20 ms), plus for ``--forecast`` the
             Holt-Winters fit and for ``anomalies`` the z-scores and the stored run

Prints a table and writes bench/results/read.json.

    .venv/bin/python bench/bench_read.py --keep \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from etl.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "read.json"
API_KEY = "ds_sandbox_demo_key_0000000000000000"
DB = "etl_bench_read"
TARGET_PROCESS_MS = 350.0
GOAL_PROCESS_MS = 150.0
TARGET_DB_MS = 20.0


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATASYNC_", "ETL_", "SANDBOX_"))
    }
    env["NO_COLOR"] = "1"
    return env


@contextlib.contextmanager
def sandbox(events: int) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "etl", "sandbox", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--events", str(events), "--unlimited"]
    proc = subprocess.Popen(
        argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        proc.terminate()
        proc.wait(30)


async def count_events(dsn: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return -1
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def prepare(server: str, events: int) -> str:
    dsn = with_db(server, DB)
    have = asyncio.run(count_events(dsn))
    if have >= events:
        print(f"{DB} holds {have:,} events: reused")
        return dsn
    if have >= 0:
        asyncio.run(admin(server, f'DROP DATABASE "{DB}" WITH (FORCE)'))
    asyncio.run(admin(server, f'CREATE DATABASE "{DB}"'))
    with sandbox(events) as api, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        argv = [sys.executable, "-m", "etl", "ingest", "--api-url", api, "--api-key", API_KEY]
        argv += ["--database-url", dsn, "--data-dir", tmp, "--quiet"]
        subprocess.run(argv, env=child_env(), check=True)
        print(f"loaded {events:,} events in {time.perf_counter() - t:.0f} s")
    asyncio.run(admin(dsn, "VACUUM ANALYZE"))
    return dsn


async def facts(dsn: str) -> dict[str, Any]:
    """A busy user, a time inside the data, for realistic arguments."""
    conn = await asyncpg.connect(dsn)
    try:
        user = await conn.fetchval(
            "SELECT user_id::text FROM rollup_user_hours GROUP BY 1 ORDER BY sum(events) DESC,"
            " 1 LIMIT 1"
        )
        last = await conn.fetchval("SELECT max(hour) FROM rollup_hourly")
        return {"user": user, "last": last}
    finally:
        await conn.close()


def commands(f: dict[str, Any]) -> list[tuple[str, list[str], Callable[[Any], Awaitable[Any]]]]:
    """(label, argv after ``etl``, the in-process read on a connection)."""
    from etl.read import rollups, top
    from etl.read.anomalies import find_anomalies
    from etl.read.events import user_events
    from etl.read.stats import series_report
    from etl.sink.purge import PurgeFilter, count

    u = f["user"]
    week = f["last"] - __import__("datetime").timedelta(days=7)
    since = week.isoformat()
    return [
        ("events --user", ["events", "--user", u], lambda c: user_events(c, u)),
        (
            "events --user --type --since",
            ["events", "--user", u, "--type", "click", "--since", since, "--json"],
            lambda c: user_events(c, u, types=("click",), since=week),
        ),
        ("series (hour, all types, 31 d)", ["series"], lambda c: series_report(c)),
        (
            "series --bucket day --stats --json",
            ["series", "--bucket", "day", "--stats", "--json"],
            lambda c: series_report(c, bucket="day", with_stats=True),
        ),
        (
            "series --total --forecast 24",
            ["series", "--total", "--forecast", "24", "--since", since],
            lambda c: series_report(c, total=True, horizon=24, since=week),
        ),
        ("anomalies --json", ["anomalies", "--json"], lambda c: find_anomalies(c)),
        (
            "top users --by purchases",
            ["top", "users", "--by", "purchases"],
            lambda c: top.read_top(c, "users", by="purchases"),
        ),
        ("top types", ["top", "types"], lambda c: top.read_top(c, "types")),
        ("top pages", ["top", "pages"], lambda c: top.read_top(c, "pages")),
        ("rollups", ["rollups"], lambda c: rollups.read_summary(c)),
        (
            "purge --user --dry-run",
            ["purge", "--user", u, "--dry-run"],
            lambda c: count(c, PurgeFilter(user_id=u)),
        ),
    ]


def time_process(argv: list[str], dsn: str, reps: int) -> tuple[float, int]:
    env = {**child_env(), "DATABASE_URL": dsn}
    full = [sys.executable, "-m", "etl", *argv]
    times = []
    code = 0
    for i in range(reps + 1):
        t = time.perf_counter()
        res = subprocess.run(full, env=env, capture_output=True)
        if i:
            times.append((time.perf_counter() - t) * 1000)
        code = res.returncode
        if code not in (0, ExitCode.FINDINGS):  # anomalies found is an answer, not a failure
            raise RuntimeError(f"etl {' '.join(argv)} exited {code}: {res.stderr.decode()[-500:]}")
    return statistics.median(times), code


async def time_db(dsn: str, read: Callable[[Any], Awaitable[Any]], reps: int = 20) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await read(conn)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            await read(conn)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)
    finally:
        await conn.close()


def python_startup_ms(reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(server: str, events: int, reps: int) -> None:
    dsn = prepare(server, events)
    n = asyncio.run(count_events(dsn))
    f = asyncio.run(facts(dsn))
    print(
        f"{n:,} events; load average {os.getloadavg()[0]:.1f}; python -c pass "
        f"{python_startup_ms(5):.0f} ms"
    )
    rows = []
    for label, argv, read in commands(f):
        proc_ms, code = time_process(argv, dsn, reps)
        db_ms = asyncio.run(time_db(dsn, read))
        rows.append(
            {
                "command": label,
                "argv": argv,
                "process_ms": round(proc_ms, 1),
                "db_ms": round(db_ms, 2),
                "exit": code,
            }
        )
        ok = "✓" if proc_ms < TARGET_PROCESS_MS and db_ms < TARGET_DB_MS else "✗"
        print(f"{label:38} {proc_ms:8.0f} ms {db_ms:8.2f} ms  {ok}", flush=True)
    worst = max(r["process_ms"] for r in rows)
    print(
        f"slowest process {worst:.0f} ms (target {TARGET_PROCESS_MS:.0f}, goal "
        f"{GOAL_PROCESS_MS:.0f}); slowest db part {max(r['db_ms'] for r in rows):.2f} ms "
        f"(target {TARGET_DB_MS:.0f})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "events": n,
                "reps": reps,
                "loadavg": os.getloadavg(),
                "targets": {
                    "process_ms": TARGET_PROCESS_MS,
                    "goal_process_ms": GOAL_PROCESS_MS,
                    "db_ms": TARGET_DB_MS,
                },
                "commands": rows,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def main() -> None:
    global DB
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--database-url", help="server DSN (a role that may CREATE DATABASE)")
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the database for the next run")
    ap.add_argument("--db-name", default=DB, help=f"the database to load and read (default {DB})")
    args = ap.parse_args()
    DB = args.db_name
    print(f"{'command':38} {'process':>11} {'in-proc':>11}")
    if args.database_url:
        try:
            run(args.database_url, args.events, args.reps)
        finally:
            if not args.keep:
                asyncio.run(
                    admin(args.database_url, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
                )
        return
    from etl.sink import EmbeddedPostgres

    with (
        tempfile.TemporaryDirectory(prefix="etl-bench-read-") as tmp,
        EmbeddedPostgres(Path(tmp) / "pg", database="postgres") as server,
    ):
        run(server, args.events, args.reps)


if __name__ == "__main__":
    main()
