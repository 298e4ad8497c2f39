"""Load test of `etl serve` on a large events table, over loopback. Not a test; a benchmark.

    .venv/bin/python bench/bench_serve.py                       # 3M events, embedded PostgreSQL
    .venv/bin/python bench/bench_serve.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_serve.py --events 200000 --seconds 5   # a quick look

Fills a fresh database with ``--events`` synthetic events (one INSERT ... SELECT over
generate_series: 30 days, 8 types, 50,000 users; the database is kept with ``--keep`` and
reused when it already holds them), starts ``etl serve`` as its own process, then for every
GET route of its OpenAPI document runs ``--clients`` concurrent clients for ``--seconds``
(bounded: at most ``--max-requests`` each) and reports p50/p99/max latency, requests/s and
errors. Then ``POST /events`` in batches of 100 from the same number of clients, and checks
that the table grew by exactly the events the server said it created (nothing lost or
doubled) and that a replayed batch is answered "present". Prints a table and writes
bench/results/serve.json. Targets (issue 16): p99 < 350 ms and p50 < 20 ms for every GET at
50 clients; POST >= 5,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from etl.sink import EmbeddedPostgres
from etl.sink.schema import migrate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve.json"
END = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
TYPES = ("page_view", "click", "signup", "purchase", "login", "logout", "search", "error")

FILL_SQL = """
INSERT INTO events (id, session_id, user_id, type, name, occurred_at, properties, session,
                    timestamp_raw)
SELECT gen_random_uuid(),
       gen_random_uuid(),
       ('00000000-0000-4000-8000-' || lpad(to_hex((i * 7919) % $2), 12, '0'))::uuid,
       (ARRAY['page_view','page_view','page_view','click','click','search','login','logout',
              'signup','purchase','error'])[1 + (i * 31) % 11],
       'event ' || (i % 97),
       $3::timestamptz - make_interval(secs => (i::float8 * $4)),
       jsonb_build_object('page', '/p/' || (i % 500), 'device', 'desktop',
                          'browser', (ARRAY['chrome','firefox','safari'])[1 + i % 3]),
       jsonb_build_object('device', 'desktop'),
       'bench'
FROM generate_series(1, $1) AS i
"""


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(server_dsn: str, name: str, n: int, users: int) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_db(server_dsn, name)
    conn = await asyncpg.connect(dsn, command_timeout=3600)
    try:
        await migrate(conn)
        have = await conn.fetchval("SELECT count(*) FROM events")
        if have != n:
            print(f"filling {n:,} events (had {have:,}) ...", flush=True)
            t0 = time.perf_counter()
            await conn.execute("TRUNCATE events")
            span_s = 30 * 86400
            await conn.execute(FILL_SQL, n, users, END, span_s / n)
            await conn.execute("VACUUM ANALYZE events")
            print(f"  filled in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        await conn.close()
    return dsn


def paths_to_load(doc: dict[str, Any], user_id: str) -> list[str]:
    """Every GET route of the document with its path parameters filled with real values."""
    fill = {"{user_id}": user_id, "{userId}": user_id, "{type}": "page_view"}
    out = []
    for path, ops in doc["paths"].items():
        if "get" not in ops or path in ("/openapi.json",):
            continue
        for key, value in fill.items():
            path = path.replace(key, value)
        if "{" not in path:
            out.append(path)
    return out


async def load_route(
    session: aiohttp.ClientSession, url: str, clients: int, seconds: float, cap: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        for _ in range(cap):
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(max(latencies, default=0) * 1000, 2),
        "statuses": statuses,
    }


def new_event(i: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": TYPES[i % len(TYPES)],
        "name": "bench",
        "timestamp": "2026-11-30T12:00:00.123Z",
        "userId": str(uuid.uuid4()),
        "properties": {"page": f"/p/{i % 50}"},
    }


async def load_post(
    session: aiohttp.ClientSession, url: str, clients: int, seconds: float, dsn: str
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    before = await conn.fetchval("SELECT count(*) FROM events")
    created = sent = errors = 0
    deadline = time.perf_counter() + seconds
    last_batch: list[dict[str, Any]] = []

    async def client(k: int) -> None:
        nonlocal created, sent, errors, last_batch
        i = 0
        while time.perf_counter() < deadline and i < 100_000:
            batch = [new_event(k * 1_000_000 + i + j) for j in range(100)]
            i += 100
            async with session.post(url, json=batch) as r:
                doc = await r.json()
                if r.status == 201:
                    created += doc["created"]
                    sent += 100
                    last_batch = batch
                else:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    async with session.post(url, json=last_batch) as r:
        replay = r.status, (await r.json()).get("present")
    after = await conn.fetchval("SELECT count(*) FROM events")
    await conn.close()
    return {
        "events_per_s": round(created / wall),
        "created": created,
        "sent": sent,
        "rows_added": after - before,
        "exact": after - before == created == sent,
        "replay_status": replay[0],
        "replay_present": replay[1],
        "errors": errors,
    }


def start_server(dsn: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(DATABASE_URL=dsn)
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # printed once the socket listens
    if "listening" not in line:
        raise SystemExit(f"etl serve did not start: {line}{proc.stderr.read()}")
    return proc, f"http://127.0.0.1:{port}"


_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_route(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load with wrk (C, cheap on the shared CPU): p50/p99 from its histogram."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    pct = {int(m[0]): float(m[1]) * _UNIT[m[2]] for m in _WRK_PCT.findall(out)}
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    max_m = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    return {
        "requests": reqs,
        "rps": rps,
        "p50_ms": round(pct[50], 2),
        "p99_ms": round(pct[99], 2),
        "max_ms": round(float(max_m[1]) * _UNIT[max_m[2]], 2) if max_m else None,
        "statuses": {200: reqs - bad, "other": bad} if bad else {200: reqs},
        "client": "wrk",
    }


async def routes_and_user(base: str, dsn: str) -> tuple[list[str], str]:
    conn = await asyncpg.connect(dsn)
    user = await conn.fetchval("SELECT user_id::text FROM events LIMIT 1")
    await conn.close()
    async with aiohttp.ClientSession() as session, session.get(base + "/openapi.json") as r:
        doc = await r.json()
    return paths_to_load(doc, user), user


async def python_route(url: str, clients: int, seconds: float, cap: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        return {**await load_route(session, url, clients, seconds, cap), "client": "python"}


async def post_load(base: str, clients: int, seconds: float, dsn: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        return await load_post(session, base + "/events", clients, seconds, dsn)


def run(args: argparse.Namespace, server_dsn: str) -> dict[str, Any]:
    dsn = asyncio.run(fill(server_dsn, args.database, args.events, args.users))
    proc, base = start_server(dsn)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    results: dict[str, Any] = {"events": args.events, "clients": args.clients, "routes": {}}
    try:
        paths, _ = asyncio.run(routes_and_user(base, dsn))
        for path in paths:
            print(f"GET {path} ...", flush=True)
            results["routes"][path] = (
                wrk_route(base + path, args.clients, args.seconds)
                if use_wrk
                else asyncio.run(
                    python_route(base + path, args.clients, args.seconds, args.max_requests)
                )
            )
        print("POST /events ...", flush=True)
        results["post"] = asyncio.run(post_load(base, args.clients, args.seconds, dsn))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return results


def print_table(res: dict[str, Any]) -> None:
    print(f"\netl serve on {res['events']:,} events, {res['clients']} concurrent clients")
    print(f"{'route':<34} {'req':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  ok")
    for path, r in res["routes"].items():
        ok = r["p99_ms"] < 350 and r["p50_ms"] < 20 and set(r["statuses"]) == {200}
        print(
            f"{path:<34} {r['requests']:>7} {r['rps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
            f"{r['max_ms']:>8}  {'✓' if ok else '✗ ' + str(r['statuses'])}"
        )
    p = res["post"]
    print(
        f"POST /events (batches of 100): {p['events_per_s']:,} events/s, "
        f"{p['created']:,} created, table grew by {p['rows_added']:,} "
        f"({'exact' if p['exact'] else 'NOT EXACT'}); replay -> {p['replay_status']} "
        f"present={p['replay_present']}; errors {p['errors']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", help="a server the bench may create databases on")
    ap.add_argument("--database", default="etl_bench_serve")
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=5000, help="per client and route")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = ap.parse_args()
    if args.dsn:
        res = run(args, args.dsn)
    else:
        data = Path(tempfile.mkdtemp(prefix="etl-bench-serve-")) / "pg"
        with EmbeddedPostgres(data, database="postgres") as dsn:
            res = run(args, dsn)
    res["taken_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print_table(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
