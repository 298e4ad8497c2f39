"""Load test of `etl serve` on a large events table, over loopback. Not a test; a benchmark.

    .venv/bin/python bench/bench_serve.py                       # 3M events, embedded PostgreSQL
    .venv/bin/python bench/bench_serve.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_serve.py --events 200000 --seconds 5   # a quick look

Uses bench/bench_read.py's database (a real `etl ingest` of ``--events`` sandbox events, so
the rollups are the loader's; built once and reused), starts ``etl serve`` as its own process,
then for every GET route of its OpenAPI document runs ``--clients`` concurrent clients for
``--seconds`` (bounded: at most ``--max-requests`` each) and reports p50/p99/max latency,
requests/s and errors. Then ``POST /events`` in batches of 100 from the same number of
clients, and checks that the table grew by exactly the events the server said it created
(nothing lost or doubled) and that a replayed batch is answered "present"; the posted events (type
``bench_post``) are then purged (`etl purge --allow-reload`). Per route it also reports the
share of answers the server's cache gave (from /metrics' ``etl_http_cache_answers_total``)
and the 1-minute load average. Prints a table and writes bench/results/serve.json. Targets
(issue 16): p99 < 350 ms and p50 < 20 ms for every GET at 50 clients; POST >= 5,000 events/s.
The load starts once the server says every worker is warm (``etl_serve_warm`` in /metrics:
its charts and in-memory stores filled for the data), as a readiness check would wait; the
time that took is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from etl.sink import EmbeddedPostgres

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import free_port, prepare

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve.json"
SERVER_LOG = ROOT / "bench" / "results" / "serve-server.log"
POST_TYPE = "bench_post"  # what the POST phase writes, purged afterwards
FLAGS = ("--allow-reload", "--yes", "--json")


def paths_to_load(doc: dict[str, Any], users: list[str], end: dt.datetime) -> dict[str, list[str]]:
    """Every GET route of the document -> the URLs its clients cycle through: a user route
    over many users, a series or top route over many ranges (so the 1 s answer cache cannot
    answer for the database), the rest as they are (they describe the present)."""
    out: dict[str, list[str]] = {}
    ranges = [
        f"since={(end - dt.timedelta(days=14, hours=k)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for k in range(200)
    ]
    for path, ops in doc["paths"].items():
        if "get" not in ops or path in ("/openapi.json",):
            continue
        if "{user_id}" in path:
            out[path] = [path.replace("{user_id}", u) + "?limit=50" for u in users]
        elif path.startswith(("/series", "/top")):
            concrete = path.replace("{type}", "page_view").replace("{what}", "users")
            sep = "&" if "?" in concrete else "?"
            extra = "h=24&" if concrete.endswith("/forecast") else ""
            out[path] = [f"{concrete}{sep}{extra}{r}" for r in ranges]
        elif path == "/anomalies":
            out[path] = [f"{path}?until={end.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        elif "{" not in path:
            out[path] = [path]
    return out


async def load_route(
    session: aiohttp.ClientSession,
    base: str,
    paths: list[str],
    clients: int,
    seconds: float,
    cap: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        for i in range(cap):
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            async with session.get(base + paths[(k * 7919 + i) % len(paths)]) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
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
        "type": POST_TYPE,
        "name": "bench",
        "timestamp": "2026-11-30T12:00:00.123Z",
        "userId": str(uuid.uuid4()),
        "properties": {"page": f"/p/{i % 50}"},
    }


async def load_post(
    session: aiohttp.ClientSession, url: str, clients: int, seconds: float, dsn: str
) -> dict[str, Any]:
    """Batches of 100 new events from ``clients`` clients; a failed request is retried (up to
    5 times, as a client would: the insert is idempotent by id). Exact: the table grew by
    exactly the events of the acknowledged batches (nothing lost, nothing doubled)."""
    conn = await asyncpg.connect(dsn)
    before = await conn.fetchval("SELECT count(*) FROM events")
    created = sent = errors = failed = 0
    deadline = time.perf_counter() + seconds
    last_batch: list[dict[str, Any]] = []

    async def send(batch: list[dict[str, Any]]) -> int | None:
        nonlocal errors
        for _ in range(5):
            async with session.post(url, json=batch) as r:
                doc = await r.json()
                if r.status in (200, 201):
                    return int(doc["created"])
            errors += 1
        return None

    async def client(k: int) -> None:
        nonlocal created, sent, failed, last_batch
        i = 0
        while time.perf_counter() < deadline and i < 100_000:
            batch = [new_event(k * 1_000_000 + i + j) for j in range(100)]
            i += 100
            n = await send(batch)
            if n is None:
                failed += 1
                continue
            created += n
            sent += 100
            last_batch = batch

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    async with session.post(url, json=last_batch) as r:
        replay = r.status, (await r.json()).get("present")
    after = await conn.fetchval("SELECT count(*) FROM events")
    await conn.close()
    return {
        "events_per_s": round(sent / wall),
        "created": created,
        "sent": sent,
        "rows_added": after - before,
        "exact": after - before == sent and not failed,
        "replay_status": replay[0],
        "replay_present": replay[1],
        "errors_retried": errors,
        "batches_failed": failed,
    }


def start_server(dsn: str, workers: int | None) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(DATABASE_URL=dsn)
    extra = ["--workers", str(workers)] if workers else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "serve", "--port", str(port), *extra],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    said = []
    for line in proc.stderr:  # "listening" once the socket listens (warnings may come first)
        said.append(line)
        if "listening" in line:
            break
    else:
        raise SystemExit(f"etl serve did not start: {''.join(said)}")
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    # keep reading what it says (a full pipe would stall the server), into a file to look at
    log = SERVER_LOG.open("w")
    log.writelines(said)
    threading.Thread(target=shutil.copyfileobj, args=(proc.stderr, log), daemon=True).start()
    return proc, f"http://127.0.0.1:{port}"


_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


_LUA = """
local paths = {%s}
local i = math.random(#paths)
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def wrk_route(base: str, paths: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load with wrk (C, cheap on the shared CPU): p50/p99 from its histogram;
    its clients cycle through ``paths``."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(_LUA % ", ".join(json.dumps(p) for p in paths))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            base + paths[0],
        ],
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


_GAUGE = re.compile(r"^(etl_serve_workers|etl_serve_warm) (\d+)$", re.M)


async def wait_warm(base: str, limit_s: float = 180.0) -> float | None:
    """Seconds until every worker has filled its charts and stores (``etl_serve_warm`` =
    ``etl_serve_workers`` in /metrics), as a readiness check would wait; None: a server
    without that gauge (older code: loaded at once)."""
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - t0 < limit_s:
            async with session.get(base + "/metrics") as r:
                gauges = dict(_GAUGE.findall(await r.text()))
            if "etl_serve_warm" not in gauges:
                return None
            if gauges["etl_serve_warm"] == gauges["etl_serve_workers"]:
                return round(time.perf_counter() - t0, 2)
            await asyncio.sleep(0.25)
    raise SystemExit(f"etl serve did not warm up in {limit_s:.0f} s")


async def routes_to_load(base: str, dsn: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    users = [
        r[0]
        for r in await conn.fetch(
            "SELECT user_id::text FROM rollup_user_hours GROUP BY 1 ORDER BY 1 LIMIT 2000"
        )
    ]
    end = await conn.fetchval("SELECT max(hour) FROM rollup_hourly")
    await conn.close()
    async with aiohttp.ClientSession() as session, session.get(base + "/openapi.json") as r:
        doc = await r.json()
    return paths_to_load(doc, users, end)


async def python_route(
    base: str, paths: list[str], clients: int, seconds: float, cap: int
) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        res = await load_route(session, base, paths, clients, seconds, cap)
        return {**res, "client": "python"}


async def post_load(base: str, clients: int, seconds: float, dsn: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        return await load_post(session, base + "/events", clients, seconds, dsn)


def purge_posted(dsn: str) -> int:
    """Take the POST phase's events out again, with the rollups (`etl purge`: no statement
    timeout, unlike the API's DELETE, which a 100k-event purge on a busy machine outlasts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    out = subprocess.run(
        [sys.executable, "-m", "etl", "purge", "--database-url", dsn, "--type", POST_TYPE, *FLAGS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)["deleted"])


_CACHE_LINE = re.compile(
    r'^etl_http_cache_answers_total\{route="([^"]+)",result="(\w+)"\} (\d+)$', re.M
)


async def cache_counts(base: str) -> dict[tuple[str, str], int]:
    """The server's answers by route and cache result (summed over its workers)."""
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as r:
        text = await r.text()
    counts: dict[tuple[str, str], int] = {}
    for route, result, n in _CACHE_LINE.findall(text):
        counts[(route, result)] = counts.get((route, result), 0) + int(n)
    return counts


def hit_rate(
    before: dict[tuple[str, str], int], after: dict[tuple[str, str], int], route: str
) -> dict[str, Any] | None:
    """Of the route's answers during its load: from memory (hit), shared with a request
    computing the same answer (shared), the last live answer while it is refreshed (stale),
    computed (miss)."""
    kinds = ("hit", "shared", "stale", "miss")
    d = {r: after.get((route, r), 0) - before.get((route, r), 0) for r in kinds}
    total = sum(d.values())
    if not total:
        return None
    return {**d, "hit_rate": round((total - d["miss"]) / total, 4)}


def run(args: argparse.Namespace, server_dsn: str) -> dict[str, Any]:
    dsn = prepare(server_dsn, args.events)  # bench_read's table: a real ingest of the sandbox
    proc, base = start_server(dsn, args.workers)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    results: dict[str, Any] = {
        "events": args.events,
        "clients": args.clients,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "routes": {},
    }
    try:
        results["warm_s"] = asyncio.run(wait_warm(base))
        print(f"warm after {results['warm_s']} s", flush=True)
        routes = asyncio.run(routes_to_load(base, dsn))
        for route, paths in routes.items():
            print(f"GET {route} ({len(paths)} distinct URLs) ...", flush=True)
            before = asyncio.run(cache_counts(base))
            res = (
                wrk_route(base, paths, args.clients, args.seconds)
                if use_wrk
                else asyncio.run(
                    python_route(base, paths, args.clients, args.seconds, args.max_requests)
                )
            )
            res["distinct_urls"] = len(paths)
            time.sleep(2.5)  # /metrics is kept 1 s, the other workers' part a second older
            res["cache"] = hit_rate(before, asyncio.run(cache_counts(base)), route)
            res["load_avg_1m"] = round(os.getloadavg()[0], 2)
            results["routes"][route] = res
        print("POST /events ...", flush=True)
        results["post"] = asyncio.run(post_load(base, args.clients, args.seconds, dsn))
        results["post"]["load_avg_1m"] = round(os.getloadavg()[0], 2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        results["purged_after"] = purge_posted(dsn)
    return results


def print_table(res: dict[str, Any]) -> None:
    print(
        f"\netl serve on {res['events']:,} events, {res['clients']} concurrent clients, "
        f"workers {res.get('workers') or 'default'} ({res.get('cpus')} CPUs); "
        f"warm after {res.get('warm_s')} s"
    )
    print(
        f"{'route':<26} {'req':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}"
        f" {'URLs':>5} {'hits':>6} {'load':>5}  ok"
    )
    for path, r in res["routes"].items():
        ok = r["p99_ms"] < 350 and r["p50_ms"] < 20 and set(r["statuses"]) == {200}
        cache = r.get("cache")
        hits = f"{100 * cache['hit_rate']:.1f}%" if cache else "–"
        print(
            f"{path:<26} {r['requests']:>7} {r['rps']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7} "
            f"{r['max_ms']:>8} {r.get('distinct_urls', ''):>5} {hits:>6} "
            f"{r.get('load_avg_1m', ''):>5}  {'✓' if ok else '✗ ' + str(r['statuses'])}"
        )
    if "post" not in res:
        return
    p = res["post"]
    print(
        f"POST /events (batches of 100): {p['events_per_s']:,} events/s acknowledged, "
        f"{p['sent']:,} sent, table grew by {p['rows_added']:,} "
        f"({'exact' if p['exact'] else 'NOT EXACT'}); replay -> {p['replay_status']} "
        f"present={p['replay_present']}; errors retried {p['errors_retried']}, "
        f"batches failed {p['batches_failed']}; load {p['load_avg_1m']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", help="a server the bench may create databases on")
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=5000, help="per client and route")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--workers", type=int, help="etl serve --workers (default: the server's)")
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
