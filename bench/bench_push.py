"""`etl push` against the sandbox's Databox surface, as processes: throughput under the
10 requests/s limit, and exactly-once through random SIGKILLs. Prints a table, writes
``bench/results/push.json``.

    .venv/bin/python bench/bench_push.py                    # embedded PostgreSQL in a temp dir
    .venv/bin/python bench/bench_push.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_push.py --throughput-records 30000 --kill-records 100000 --kills 50

throughput  N events loaded, then `etl push --dataset events` with the sandbox at
            ``--databox-rate-limit 10`` (its default): records/s over the push phase (the
            first request's send to the last answer, from ``delivery_log``) and over the
            whole process; target >= 0.95 of 100 records x 10 requests/s = 1,000/s.
kills       M events, the sandbox at 100 requests/s and 2 % lost answers (stored, then 504);
            `etl push` SIGKILLed ``--kills`` times, alternately at a random moment (uniform
            0.3-1.5 s after its start: start-up included) and mid-push (once the sandbox has
            received a random 1-1,000 more records), then run to the end: the dataset must
            hold every event exactly once.
The sandbox is a separate process, so it keeps what it received across the pusher's deaths.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from etl.models import Batch, Checkpoint, Position, ShardState
from etl.sandbox.databox.config import DATABOX_DEMO_KEY
from etl.sink import EmbeddedPostgres, PostgresSink
from etl.source.datasync import EVENTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sink import make_records

RESULTS = Path(__file__).resolve().parent / "results" / "push.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


class Sandbox:
    """`etl sandbox` as a process; its Databox surface at ``self.url``."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etl",
                "sandbox",
                "--port",
                str(self.port),
                "--events",
                "10",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}/databox"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def received(self) -> int:
        """Records received so far, over every dataset (cheap: no records)."""
        with urllib.request.urlopen(f"{self.url}/_sandbox/stats", timeout=10) as resp:
            stats = json.load(resp)
        return sum(int(d["received"]) for d in stats["datasets"].values())

    def dump(self, dataset_id: str) -> dict[str, Any]:
        url = f"{self.url}/_sandbox/datasets/{dataset_id}/records"
        with urllib.request.urlopen(url, timeout=60) as resp:
            body: dict[str, Any] = json.load(resp)
        return body

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


async def load(dsn: str, n: int, seed: int) -> list[str]:
    records = make_records(n, seed=seed)
    async with PostgresSink(dsn, stream=EVENTS) as sink:
        await sink.add_shards([ShardState("s1", None, None)])
        for i in range(0, n, 5000):
            chunk = records[i : i + 5000]
            last = chunk[-1]
            cp = Checkpoint("s1", Position(int(last[5].timestamp() * 1000), last[0]), "c", False, 1)
            await sink.write(Batch(chunk, [], cp, len(chunk)))
    return [r[0] for r in records]


def push_env(dsn: str, sandbox: Sandbox, data_dir: Path, rate: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DATABOX_"))}
    env.update(
        DATABASE_URL=dsn,
        DATABOX_API_URL=sandbox.url,
        DATABOX_API_KEY=DATABOX_DEMO_KEY,
        ETL_DATA_DIR=str(data_dir),
        ETL_PUSH_RATE=f"{rate:g}",
        NO_COLOR="1",
    )
    return env


def run_push(
    env: dict[str, str],
    kill_after_s: float | None = None,
    *,
    sandbox: Sandbox | None = None,
    kill_after_records: int | None = None,
) -> tuple[int, float]:
    """One `etl push`; SIGKILLed after ``kill_after_s`` seconds, or once the sandbox has
    received ``kill_after_records`` more records (polled every 20 ms)."""
    t0 = time.perf_counter()
    start = sandbox.received() if sandbox is not None else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "push", "--dataset", "events"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    if kill_after_records is not None and sandbox is not None:
        while proc.poll() is None and sandbox.received() - start < kill_after_records:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"etl push exited {proc.returncode}: {err.decode()[-500:]}")
    return proc.returncode, time.perf_counter() - t0


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def throughput(server: str, n: int, tmp: Path) -> dict[str, Any]:
    dsn = await fresh_db(server)
    sandbox = Sandbox("--databox-rate-limit", "10")
    try:
        await load(dsn, n, seed=3)
        code, wall = run_push(push_env(dsn, sandbox, tmp / "t", 10.0))
        assert code == 0
        row = (
            await fetch(
                dsn,
                "SELECT min(sent_at) AS first,"
                " max(sent_at + duration_ms * interval '1 ms') AS last,"
                " sum(rows_received) FILTER (WHERE success) AS records, count(*) AS requests,"
                " count(*) FILTER (WHERE http_status = 429) AS limited"
                " FROM delivery_log WHERE destination = 'databox'",
            )
        )[0]
        span = (row["last"] - row["first"]).total_seconds()
        rate = int(row["records"]) / span
        return {
            "records": int(row["records"]),
            "requests": int(row["requests"]),
            "rate_limited": int(row["limited"]),
            "push_phase_s": round(span, 2),
            "records_per_s": round(rate, 1),
            "ratio_of_1000": round(rate / 1000, 4),
            "process_wall_s": round(wall, 2),
            "process_records_per_s": round(n / wall, 1),
            "target": ">= 0.95",
            "met": rate / 1000 >= 0.95,
        }
    finally:
        sandbox.stop()
        await drop_db(server, dsn)


async def kills(server: str, n: int, kill_count: int, tmp: Path, seed: int) -> dict[str, Any]:
    dsn = await fresh_db(server)
    sandbox = Sandbox(
        "--databox-rate-limit", "100", "--databox-p-lost", "0.02", "--fault-seed", str(seed)
    )
    rnd = random.Random(seed)
    try:
        ids = await load(dsn, n, seed=4)
        env = push_env(dsn, sandbox, tmp / "k", 100.0)
        done = killed = mid_push = 0
        received_before = 0
        t0 = time.perf_counter()
        while killed < kill_count:
            if killed % 2:  # at a random moment of the process's life (start-up included)
                code, _ = run_push(env, kill_after_s=rnd.uniform(0.3, 1.5))
            else:  # in the middle of the push: after a random number of records received
                code, _ = run_push(env, sandbox=sandbox, kill_after_records=rnd.randint(1, 1000))
            if code == 0:  # finished before its kill: reload nothing, count it, go on
                done += 1
                break
            killed += 1
            received = sandbox.received()
            mid_push += received > received_before
            received_before = received
        code, _ = run_push(env)
        assert code == 0
        elapsed = time.perf_counter() - t0
        remote_id = (await fetch(dsn, "SELECT remote_id FROM push_datasets"))[0]["remote_id"]
        dump = sandbox.dump(remote_id)
        stored = [r["id"] for r in dump["records"]]
        owed = await fetch(dsn, "SELECT count(*) AS n FROM push_outbox")
        missing = len(set(ids) - set(stored))
        extra = len(set(stored) - set(ids))
        doubled = len(stored) - len(set(stored))
        return {
            "records": n,
            "kills": killed,
            "kills_mid_push": mid_push,
            "finished_before_kill": done,
            "stored": len(stored),
            "missing": missing,
            "extra": extra,
            "doubled": doubled,
            "received_by_sandbox": int(dump["receivedRecordsCount"]),
            "resent_as_overwrites": int(dump["receivedRecordsCount"]) - n,
            "outbox_rows_left": int(owed[0]["n"]),
            "elapsed_s": round(elapsed, 1),
            "met": missing == extra == doubled == 0 and len(stored) == n,
        }
    finally:
        sandbox.stop()
        await drop_db(server, dsn)


async def fresh_db(server: str) -> str:
    name = f"etl_bench_push_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_db(server, name)


async def drop_db(server: str, dsn: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(dsn).path[1:]}" WITH (FORCE)')
    finally:
        await conn.close()


async def bench(server: str, args: argparse.Namespace) -> None:
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="etl-bench-push-") as tmp:
        t = await throughput(server, args.throughput_records, Path(tmp))
        print(
            f"throughput  {t['records']:,} records, {t['requests']} requests, "
            f"{t['rate_limited']}x429: {t['records_per_s']:,.1f} records/s over the push phase "
            f"({t['push_phase_s']} s) = {t['ratio_of_1000']:.3f} of 1,000/s "
            f"[target >= 0.95: {'met' if t['met'] else 'MISSED'}]; whole process "
            f"{t['process_records_per_s']:,.1f}/s ({t['process_wall_s']} s)"
        )
        k = await kills(server, args.kill_records, args.kills, Path(tmp), args.seed)
        print(
            f"kills       {k['records']:,} records, {k['kills']} SIGKILLs "
            f"({k['kills_mid_push']} with progress since the previous one): stored "
            f"{k['stored']:,}, missing {k['missing']}, extra {k['extra']}, doubled "
            f"{k['doubled']}; the sandbox received {k['received_by_sandbox']:,} "
            f"({k['resent_as_overwrites']:,} re-sent, overwritten by key); outbox left "
            f"{k['outbox_rows_left']} [exactly once: {'met' if k['met'] else 'MISSED'}] "
            f"in {k['elapsed_s']} s"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"load_average": os.getloadavg(), "throughput": t, "kills": k}, indent=2) + "\n"
    )
    print(f"wrote {RESULTS}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", help="server DSN (a role that may CREATE DATABASE)")
    ap.add_argument("--throughput-records", type=int, default=30_000)
    ap.add_argument("--kill-records", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.dsn:
        asyncio.run(bench(args.dsn, args))
        return
    with (
        tempfile.TemporaryDirectory(prefix="etl-bench-") as tmp,
        EmbeddedPostgres(Path(tmp) / "pg", database="postgres") as dsn,
    ):
        asyncio.run(bench(dsn, args))


if __name__ == "__main__":
    main()
