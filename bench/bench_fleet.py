"""The fleet at scale (issue 17, deliverable 5): S sources x 16 shards as `etl ingest --fleet`
tasks over W worker processes on this machine, one sandbox serving S keys, one PostgreSQL.
Prints a table, writes ``bench/results/fleet.json``.

    .venv/bin/python bench/bench_fleet.py                         # S = 10 and 100, W = 8
    .venv/bin/python bench/bench_fleet.py --sizes 10 --events 2000 # a smoke run

Per fleet size S (measured, real processes):
- a private PostgreSQL 15 (``initdb`` in a temp dir, ``max_connections`` 400, so the shared
  server's 100 connections are not taken from the other users of this machine), one
  database per source, made by the tasks;
- one ``etl sandbox`` with S keys (one dataset of ``--events`` for every key; rate limits
  per key, time scale 10, 3.5 s per 5000-event page, ``--capacity 0``: every key gets the
  same latency however many are busy, as separate accounts of a real API would);
- W task processes ``etl ingest --fleet F --shard-index I --shard-count W``, each loading
  its share of all S x 16 shards, ``parallel`` sources at a time; a task that exits 75 is
  started again (as an orchestrator would), at most 3 times;
- figures: wall time, events/s, requests and 429s per key (from each source's summary line),
  the per-key budget use (requests ÷ the key's bound over the time the key was busy), CPU
  seconds of the tasks (rusage), of PostgreSQL (the postmaster and every backend, reaped
  ones included) and of the sandbox, per event; each source's id set checked exactly
  (count, distinct count and an md5 of the sorted ids against the sandbox's dataset).

S = 1,000 (``--simulate``) is **not run**: it is extrapolated from the largest measured
size, per source (the per-source CPU of tasks and PostgreSQL, the time and disk of a
database), and stated as such in the table and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fleet.json"
ETL = str(ROOT / ".venv" / "bin" / "etl")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCALE = 10.0
# the sandbox's default per-key limits, time-scaled: /events 10 per 60 s, feed 200 per 300 s
KEY_BOUND_RPS = (10 / 60 + 200 / 300) * SCALE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu(proc: psutil.Process) -> float:
    """User+sys seconds of ``proc``, its reaped children and its live ones."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.Error:
            continue
        total += c.user + c.system
    return float(total)


class PrivatePostgres:
    """initdb + pg_ctl in ``work`` (as the postgres user when run as root)."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "pg"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.dir.parent, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(PG_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c max_connections=400 -c shared_buffers=256MB -c max_wal_size=2GB"
        )
        self._run(PG_BIN / "pg_ctl", "-D", data, "-o", opts, "-l", self.dir / "log", "-w", "start")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        self.postmaster = psutil.Process(pid)
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.data = data

    def _run(self, *argv: object) -> None:
        subprocess.run(
            [*self.as_user, *map(str, argv)], check=True, stdout=subprocess.DEVNULL, cwd="/"
        )

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "stop")


def start_sandbox(work: Path, keys: list[str], events: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [ETL, "sandbox", "--port", str(port), "--events", str(events)]
    argv += ["--time-scale", f"{SCALE:g}", "--latency-per-page", "3.5", "--capacity", "0"]
    env = dict(os.environ) | {"SANDBOX_API_KEYS": " ".join(keys)}
    out = (work / f"sandbox-{port}.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return proc, base + "/api/v1"
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the sandbox did not start")


def fleet_file(path: Path, api_url: str, size: int, tag: str, parallel: int, shards: int) -> None:
    lines = [
        f"parallel: {parallel}",
        f"defaults: {{shards: {shards}, page_size: 1000, loaders: 1}}",
        "sources:",
    ]
    lines += [
        f"  - {{name: s{i:04d}, api_url: '{api_url}', api_key_env: K{i:04d}, "
        f"database: {tag}_{i:04d}}}"
        for i in range(size)
    ]
    path.write_text("\n".join(lines) + "\n")


def run_tasks(
    work: Path, fleet: Path, workers: int, env: dict[str, str]
) -> tuple[list[dict[str, Any]], float, int]:
    """W task processes to the end (75 restarts the index, up to 3 times): summary lines,
    CPU seconds of all tasks (rusage), restarts."""
    lines: list[dict[str, Any]] = []
    cpu_s = 0.0
    restarts = 0
    attempts = dict.fromkeys(range(workers), 0)
    running: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(i: int) -> None:
        attempts[i] += 1
        out = work / f"task{i}-{attempts[i]}.out"
        argv = [ETL, "ingest", "--fleet", str(fleet), "--shard-index", str(i)]
        argv += ["--shard-count", str(workers), "--log-format", "json", "--quiet"]
        argv += ["--data-dir", str(work / f"data{i}")]
        with out.open("wb") as f, (work / f"task{i}-{attempts[i]}.err").open("wb") as e:
            running[i] = (subprocess.Popen(argv, env=env, stdout=f, stderr=e), out)

    for i in range(workers):
        start(i)
    while running:
        pid, status, usage = os.wait4(-1, 0)
        index = next((i for i, (p, _) in running.items() if p.pid == pid), None)
        if index is None:
            continue
        proc, out = running.pop(index)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu_s += usage.ru_utime + usage.ru_stime
        for raw in out.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw) | {"task": index, "exit": proc.returncode})
        if proc.returncode == 75 and attempts[index] < 3:
            restarts += 1
            start(index)
        elif proc.returncode != 0:
            err = out.with_suffix(".err").read_text(errors="replace")[-1500:]
            print(f"task {index} exited {proc.returncode}: {err}", file=sys.stderr)
    return lines, cpu_s, restarts


async def check_sources(dsn_of: dict[str, str], expected_md5: str, events: int) -> dict[str, Any]:
    """Each source's database: the exact id set, and its size on disk."""
    bad: list[str] = []
    sizes: list[int] = []
    for name, dsn in dsn_of.items():
        conn = await asyncpg.connect(dsn)
        try:
            n, distinct, digest, size = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT id), "
                "md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')), "
                "pg_database_size(current_database()) FROM events"
            )
        finally:
            await conn.close()
        sizes.append(int(size))
        if (n, distinct, digest) != (events, events, expected_md5):
            bad.append(f"{name}: {n} rows, {distinct} distinct")
    return {"exact": not bad, "bad": bad[:10], "db_mb_each": sum(sizes) / len(sizes) / 2**20}


def expected_md5(events: int) -> str:
    sys.path.insert(0, str(ROOT))
    from etl.sandbox.config import SandboxConfig
    from etl.sandbox.dataset import Dataset

    ids = sorted(Dataset(SandboxConfig(events=events)).ids())
    return hashlib.md5(",".join(ids).encode()).hexdigest()


def per_key(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests, 429s and the budget use per key (= per source) from the summary lines."""
    keys: dict[str, dict[str, float]] = {}
    for line in lines:
        if line.get("event") != "summary" or "source" not in line:
            continue
        k = keys.setdefault(line["source"], {"requests": 0, "429": 0, "start": 1e18, "end": 0})
        k["requests"] += line.get("requests", 0)
        k["429"] += line.get("rate_limited", 0)
        k["start"] = min(k["start"], line["ts"] - line.get("elapsed_s", 0))
        k["end"] = max(k["end"], line["ts"])
    uses = sorted(
        k["requests"] / (KEY_BOUND_RPS * max(1e-3, k["end"] - k["start"])) for k in keys.values()
    )
    req = sum(k["requests"] for k in keys.values())
    limited = sum(k["429"] for k in keys.values())
    mid = len(uses) // 2
    return {
        "keys": len(keys),
        "requests": req,
        "rate_limited": limited,
        "share_429": limited / req if req else 0.0,
        "requests_per_key": req / max(1, len(keys)),
        "busy_s_per_key": sum(k["end"] - k["start"] for k in keys.values()) / max(1, len(keys)),
        "budget_use_median": uses[mid] if uses else 0.0,
        "budget_use_max": uses[-1] if uses else 0.0,
    }


def measure(args: argparse.Namespace, size: int, work: Path, digest: str) -> dict[str, Any]:
    pg = PrivatePostgres(work / f"s{size}")
    keys = [f"ds_fleet_{i:04d}_{secrets.token_hex(8)}" for i in range(size)]
    sandbox, api_url = start_sandbox(work, keys, args.events)
    try:
        tag = f"fleet{size}"
        fleet = work / f"fleet{size}.yaml"
        fleet_file(fleet, api_url, size, tag, args.parallel, args.shards)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DATASYNC_"))}
        env |= {f"K{i:04d}": key for i, key in enumerate(keys)} | {"DATABASE_URL": pg.dsn}
        sb = psutil.Process(sandbox.pid)
        pg0, sb0, load0 = cpu(pg.postmaster), cpu(sb), os.getloadavg()
        t0 = time.perf_counter()
        lines, etl_cpu, restarts = run_tasks(work, fleet, args.workers, env)
        wall = time.perf_counter() - t0
        pg_cpu, sb_cpu, load1 = cpu(pg.postmaster) - pg0, cpu(sb) - sb0, os.getloadavg()
        base = pg.dsn.rsplit("/", 1)[0]
        dsns = {f"s{i:04d}": f"{base}/{tag}_{i:04d}" for i in range(size)}
        check = asyncio.run(check_sources(dsns, digest, args.events))
        again = second_pass(work / f"pass2-{size}", fleet, args.workers, env, pg, size)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        pg.stop()
        shutil.rmtree(pg.dir, ignore_errors=True)
    events = size * args.events
    return {
        "sources": size,
        "simulated": False,
        "events": events,
        "wall_s": round(wall, 1),
        "events_per_s": round(events / wall),
        "restarts_75": restarts,
        "tasks_exit": sorted({line["exit"] for line in lines}),
        "etl_cpu_s": round(etl_cpu, 1),
        "pg_cpu_s": round(pg_cpu, 1),
        "sandbox_cpu_s": round(sb_cpu, 1),
        "etl_us_per_event": round(1e6 * etl_cpu / events, 1),
        "pg_us_per_event": round(1e6 * pg_cpu / events, 1),
        "etl_cpu_s_per_source": round(etl_cpu / size, 2),
        "pg_cpu_s_per_source": round(pg_cpu / size, 2),
        "load": [load0, load1],
        **per_key(lines),
        **check,
        **again,
    }


def second_pass(
    work: Path, fleet: Path, workers: int, env: dict[str, str], pg: PrivatePostgres, size: int
) -> dict[str, Any]:
    """The same tasks again over the loaded fleet (nothing new at the source): the cost of
    one scheduled pass (an hourly run) per source, all fixed cost."""
    work.mkdir()
    pg0, t0 = cpu(pg.postmaster), time.perf_counter()
    lines, etl_cpu, _ = run_tasks(work, fleet, workers, env)
    wall, pg_cpu = time.perf_counter() - t0, cpu(pg.postmaster) - pg0
    return {
        "pass2_wall_s": round(wall, 1),
        "pass2_exit": sorted({line["exit"] for line in lines}),
        "pass2_requests": per_key(lines)["requests"],
        "pass2_etl_cpu_s_per_source": round(etl_cpu / size, 3),
        "pass2_pg_cpu_s_per_source": round(pg_cpu / size, 3),
    }


def simulate(real: dict[str, Any], size: int, cores: int) -> dict[str, Any]:
    """A fleet of ``size`` sources extrapolated per source from a measured one: CPU (tasks,
    PostgreSQL, sandbox) scales with the sources; the wall time too (the same W tasks with
    the same ``parallel`` walk f times as many sources), and never below all CPU ÷ cores."""
    f = size / real["sources"]
    etl_cpu, pg_cpu = real["etl_cpu_s"] * f, real["pg_cpu_s"] * f
    sandbox_cpu = real["sandbox_cpu_s"] * f
    wall = max((etl_cpu + pg_cpu + sandbox_cpu) / cores, real["wall_s"] * f)
    events = real["events"] * f
    return {
        "sources": size,
        "simulated": True,
        "how": f"x{f:g} per source from the measured {real['sources']} sources; "
        f"wall = max(measured wall x {f:g}, all CPU / {cores} cores)",
        "events": int(events),
        "wall_s": round(wall, 1),
        "events_per_s": round(events / wall),
        "etl_cpu_s": round(etl_cpu, 1),
        "pg_cpu_s": round(pg_cpu, 1),
        "etl_us_per_event": real["etl_us_per_event"],
        "pg_us_per_event": real["pg_us_per_event"],
        "db_mb_total": round(real["db_mb_each"] * size),
        "share_429": real["share_429"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100", help="fleet sizes to run for real")
    ap.add_argument("--simulate", default="1000", help="fleet sizes to extrapolate")
    ap.add_argument("--events", type=int, default=10_000, help="events per source")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=4, help="sources a task loads at once")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="etl-fleet-bench-"))
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    digest = expected_md5(args.events)
    rows = [measure(args, int(s), work, digest) for s in args.sizes.split(",")]
    largest = rows[-1]
    rows += [simulate(largest, int(s), os.cpu_count() or 2) for s in args.simulate.split(",") if s]
    result = {"args": vars(args) | {"out": str(args.out)}, "key_bound_rps": KEY_BOUND_RPS}
    result["rows"] = rows
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["sources", "events", "wall s", "ev/s", "429 %", "budget use", "etl µs/ev"]
    head += ["pg µs/ev", "etl CPU s/src", "pg CPU s/src", "exact", "load"]
    print(" | ".join(head))
    for r in rows:
        sim = " (simulated)" if r["simulated"] else ""
        use = f"{r.get('budget_use_median', 0):.2f}/{r.get('budget_use_max', 0):.2f}"
        load = "-" if r["simulated"] else f"{r['load'][0][0]:.1f}→{r['load'][1][0]:.1f}"
        cells = [
            f"{r['sources']:,}{sim}",
            f"{r['events']:,}",
            f"{r['wall_s']:,}",
            f"{r['events_per_s']:,}",
            f"{100 * r['share_429']:.2f}",
            "-" if r["simulated"] else use,
            f"{r['etl_us_per_event']}",
            f"{r['pg_us_per_event']}",
            f"{r.get('etl_cpu_s_per_source', '-')}",
            f"{r.get('pg_cpu_s_per_source', '-')}",
            "-" if r["simulated"] else str(r["exact"]),
            load,
        ]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
