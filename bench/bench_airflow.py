"""deploy/airflow/etl_shards_dag.py run for real: Airflow in a throw-away venv, `airflow dags
test` against a local PostgreSQL and the sandbox. Not CI (Airflow is ~130 packages). Prints a
table, writes ``bench/results/airflow.json``.

    .venv/bin/python bench/bench_airflow.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_airflow.py --dsn … --venv /tmp/af-venv   # reuse an install

1. ``python -m venv`` in a temp dir (or ``--venv``), ``pip install apache-airflow==VERSION``
   (no constraints file: its URL is not reachable here; pip resolves on its own), timed.
2. ``AIRFLOW_HOME`` in a temp dir with SQLite metadata, ``airflow db migrate``.
3. ``etl sandbox`` on a free port (``--events``, 3.5 s per 5000-event page, time scale 10),
   a fresh database on ``--dsn``'s server.
4. ``airflow dags test etl_ingest_shards`` with the DAG copied unchanged into the DAGs
   folder, ``ETL_SHARD_COUNT=--tasks``, ``ETL_COMMAND`` = this checkout's ``etl``. While
   mapped task ``--kill-index`` runs, its ``etl ingest`` child is SIGKILLed once the table
   has grown by a page (an OOM kill, a lost node); the task fails with -9, Airflow retries
   it after the DAG's ``retry_delay``, and the retry resumes the share.
5. Checks: `dags test` exits 0, every mapped task instance ``success`` (the killed one on
   try 2), the loaded id set equals the sandbox's, the retry's summary says it resumed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
DAG = ROOT / "deploy" / "airflow" / "etl_shards_dag.py"
RESULTS = ROOT / "bench" / "results" / "airflow.json"
KEY = "ds_airflow_bench_key_000000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def execute(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def timed(argv: list[str], env: dict[str, str], log: Path, timeout_s: float) -> float:
    t0 = time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.run(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        ).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(argv[:4])} … exited {code}:\n{tail}")
    return time.perf_counter() - t0


def install(venv: Path, version: str, work: Path) -> dict[str, Any]:
    """Airflow into ``venv`` (made when missing); what it took."""
    if (venv / "bin" / "airflow").exists():
        return {"reused": str(venv), "install_s": None}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", f"apache-airflow=={version}"]
    install_s = timed(pip, dict(os.environ), work / "pip.log", 3000)
    freeze = subprocess.run(
        [str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {
        "install_s": round(time.perf_counter() - t0, 1),
        "pip_s": round(install_s, 1),
        "packages": len(freeze),
    }


def start_sandbox(work: Path, events: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [str(ROOT / ".venv" / "bin" / "etl"), "sandbox", "--port", str(port)]
    argv += ["--events", str(events), "--api-key", KEY, "--time-scale", "10"]
    argv += ["--latency-per-page", "3.5", "--capacity", "0"]
    log = (work / "sandbox.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return proc, base + "/api/v1"
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the sandbox did not start")


class Killer(threading.Thread):
    """SIGKILLs the ``etl ingest --shard-index I`` child once the table grew by a page."""

    def __init__(self, index: int, dsn: str, page: int) -> None:
        super().__init__(daemon=True)
        self.index, self.dsn, self.page = index, dsn, page
        self.killed: dict[str, Any] | None = None
        self.done = threading.Event()

    def _find(self) -> psutil.Process | None:
        want = ["--shard-index", str(self.index)]
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if "ingest" in cmd and any(cmd[i : i + 2] == want for i in range(len(cmd))):
                return p
        return None

    def _count(self) -> int:
        try:
            rows = asyncio.run(execute(self.dsn, "SELECT count(*) AS n FROM events"))
        except (OSError, asyncpg.PostgresError):
            return 0
        return int(rows[0]["n"])

    def run(self) -> None:
        while not self.done.is_set():
            proc = self._find()
            if proc is None:
                time.sleep(0.2)
                continue
            before = self._count()
            t0 = time.perf_counter()
            while self._count() < before + self.page and proc.is_running():
                time.sleep(0.2)
            if not proc.is_running():  # it ended first: try the next process
                continue
            proc.send_signal(signal.SIGKILL)
            self.killed = {"pid": proc.pid, "after_s": round(time.perf_counter() - t0, 1)}
            self.killed["rows_at_kill"] = self._count()
            return


def task_instances(home: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "airflow.db")
    try:
        rows = db.execute(
            "SELECT map_index, state, try_number, start_date, end_date FROM task_instance "
            "WHERE dag_id = 'etl_ingest_shards' ORDER BY map_index"
        ).fetchall()
    finally:
        db.close()
    keys = ("map_index", "state", "try_number", "start", "end")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def summaries(log: str) -> list[dict[str, Any]]:
    """The `etl ingest` summary lines (JSON) in the dags-test output, in order."""
    out = []
    for line in log.splitlines():
        if line.startswith("{") and '"event": "summary"' in line:
            out.append(json.loads(line))
    return out


def expected_ids(events: int) -> set[str]:
    sys.path.insert(0, str(ROOT))
    from etl.sandbox.config import SandboxConfig
    from etl.sandbox.dataset import Dataset

    return set(Dataset(SandboxConfig(events=events)).ids())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", required=True, help="a server where the role may CREATE DATABASE")
    ap.add_argument("--airflow-version", default="3.3.2")
    ap.add_argument("--venv", type=Path, help="Airflow's venv (made and kept when missing)")
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--kill-index", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="etl-airflow-bench-"))
    venv = args.venv or work / "venv"
    result: dict[str, Any] = {
        "airflow_version": args.airflow_version,
        "load_before": os.getloadavg(),
    }
    result["install"] = install(venv, args.airflow_version, work)
    home, dags = work / "home", work / "dags"
    dags.mkdir(parents=True)
    shutil.copy(DAG, dags / DAG.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DATASYNC_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(venv / "bin" / "airflow")
    result["db_migrate_s"] = round(timed([airflow, "db", "migrate"], env, work / "m.log", 900), 1)
    sandbox, api_url = start_sandbox(work, args.events)
    name = f"etl_airflow_{secrets.token_hex(4)}"
    asyncio.run(execute(args.dsn, f'CREATE DATABASE "{name}"'))
    dsn = with_db(args.dsn, name)
    env |= {
        "DATABASE_URL": dsn,
        "DATASYNC_API_URL": api_url,
        "DATASYNC_API_KEY": KEY,
        "ETL_SHARD_COUNT": str(args.tasks),
        "ETL_SHARDS": str(args.shards),
        "ETL_PAGE_SIZE": "1000",
        "ETL_COMMAND": str(ROOT / ".venv" / "bin" / "etl"),
    }
    killer = Killer(args.kill_index, dsn, page=1000)
    killer.start()
    log = work / "dags-test.log"
    try:
        t0 = time.perf_counter()
        with log.open("wb") as out:
            code = subprocess.run(
                [airflow, "dags", "test", "etl_ingest_shards"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=False,
            ).returncode
        result["dags_test_s"] = round(time.perf_counter() - t0, 1)
        killer.done.set()
        rows = asyncio.run(execute(dsn, "SELECT id::text AS id FROM events"))
        loaded = [r["id"] for r in rows]
    finally:
        killer.done.set()
        os.killpg(sandbox.pid, signal.SIGTERM)
        asyncio.run(execute(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    text = log.read_text(errors="replace")
    tis = task_instances(home)
    ids = expected_ids(args.events)
    lines = summaries(text)
    result |= {
        "dags_test_exit": code,
        "load_after": os.getloadavg(),
        "task_instances": tis,
        "killed": killer.killed,
        "loaded": len(loaded),
        "distinct": len(set(loaded)),
        "exact": set(loaded) == ids and len(loaded) == len(ids),
        "summaries": [
            {k: s.get(k) for k in ("status", "received", "inserted", "duplicates", "elapsed_s")}
            for s in lines
        ],
        "resumed": bool(re.search(r"resuming \d+ unfinished shard", text)),
        "work_dir": str(work),
    }
    ok = (
        code == 0
        and result["exact"]
        and killer.killed is not None
        and all(t["state"] == "success" for t in tis)
        and len(tis) == args.tasks
        and any(t["map_index"] == args.kill_index and t["try_number"] >= 2 for t in tis)
    )
    result["ok"] = ok
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    sys.exit(0 if ok else 1)


def print_table(r: dict[str, Any]) -> None:
    inst = r["install"]
    print(
        f"Airflow {r['airflow_version']}: install {inst.get('install_s')} s "
        f"({inst.get('packages', '?')} packages), db migrate {r['db_migrate_s']} s"
    )
    print(f"dags test: exit {r['dags_test_exit']} in {r['dags_test_s']} s; killed {r['killed']}")
    print("map_index  state    try  start → end")
    for t in r["task_instances"]:
        print(
            f"{t['map_index']:>9}  {t['state']:<8} {t['try_number']:>3}  {t['start']} → {t['end']}"
        )
    print(f"loaded {r['loaded']:,} rows, {r['distinct']:,} distinct, exact id set: {r['exact']}")
    print(f"load average before {r['load_before']}, after {r['load_after']}; OK: {r['ok']}")


if __name__ == "__main__":
    main()
