"""N tasks on one API key: the shared rate budget (issue 17) against its targets.

For N = 1, 2, 4, 8 task processes (``etl ingest --shard-index I --shard-count N``, the
budget shared through PostgreSQL, the default in task mode) against one sandbox key under
the real limits time-scaled (x10: /events 10 per 6 s, the feed's hidden throttle 200 per
30 s; pages of 3.5 s / 10 sharing the server's capacity), with random SIGKILLs of tasks,
each restarted with its index after ``--restart-delay`` (as an engine would):

* **combined** = the dataset / wall time (first start to last exit) ÷ the key's budget bound
  5000 x (10/60 + 200/300) x scale (bench/ingestkit/latency.py's bound);
* **429 share** = the sandbox's 429s ÷ its requests (counted by the sandbox itself: this
  script serves it, with a stats route);
* **exact** = the ids in the table are the sandbox's ids, each once;
* **reuse** per kill = from the SIGKILL until the tasks running beside it have booked the
  whole budget again: the first time one of them asked for a start and the key's limiter
  had none free at once (refused, or granted only ahead: rate_budget_log's rows of 0
  slots), so no part of the budget, the dead task's included, was left unused; in wall
  seconds and in the API's time (x scale). Not measurable without a survivor (all killed
  together, or the others done). (Until 2026-12-03 afternoon only refusals counted: a
  survivor sending at the key's full pace, each ask granted just in time or a little
  ahead, was never refused, and a reuse of 2 s was reported where the trace showed it
  sending at the whole key's pace 0.02 s after the kill.)

Prints a table and writes bench/results/tasks.json.

    .venv/bin/python bench/bench_tasks.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_tasks.py --tasks 2 --events 300000 --kills 2   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from ingestkit.common import API_KEY, PAGE, RESULTS_DIR, ROOT
from ingestkit.procs import Children, child_env, free_port
from ingestkit.services import Postgres, database

TARGET_COMBINED = 0.95
TARGET_429 = 0.005
TARGET_REUSE_API_S = 10.0


# ---------------------------------------------------------------------------------------------
# the sandbox, served by this script (``--serve``) so that it can report its own counts
# ---------------------------------------------------------------------------------------------


def serve(port: int, events: int, scale: float, latency: float) -> None:
    from aiohttp import web

    from etl.sandbox import SandboxConfig, build_app, state_of

    config = SandboxConfig(
        events=events, time_scale=scale, latency_per_page=latency, api_keys=(API_KEY,)
    )
    app = build_app(config)
    state = state_of(app)

    async def stats(_: web.Request) -> web.Response:
        s = state.stats
        return web.json_response(
            {"requests": dict(s.requests), "rate_limited": dict(s.rate_limited)}
        )

    app.router.add_get("/bench/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def sandbox_stats(root: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(root + "/bench/stats", timeout=10) as resp:
        data: dict[str, dict[str, int]] = json.load(resp)
        return data


def start_sandbox(children: Children, work: Path, env: dict[str, str], a: Any) -> tuple[Any, str]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(port), "--events", str(a.events)]
    argv += ["--time-scale", str(a.time_scale), "--latency-per-page", str(a.latency_per_page)]
    proc = children.spawn(argv, cwd=work, env=env, log=work / "sandbox")
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + max(120.0, a.events / 20_000)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((work / "sandbox.err").read_text()[-1500:])
        try:
            with urllib.request.urlopen(root + "/health", timeout=2):
                return proc, root
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("sandbox not up")


# ---------------------------------------------------------------------------------------------
# one N
# ---------------------------------------------------------------------------------------------


@dataclass
class Kill:
    at: float  # epoch seconds
    index: int
    pid: int
    replacement_pid: int | None = None
    reuse_wall_s: float | None = None
    reuse_api_s: float | None = None


@dataclass
class Result:
    tasks: int
    wall_s: float = 0.0
    events: int = 0
    exact: bool = False
    combined: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    share_429: float = 0.0
    rate_limited_by: dict[str, int] = field(default_factory=dict)  # 429s per sandbox route
    requests_by: dict[str, int] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    pids: dict[int, int] = field(default_factory=dict)  # every process started -> its index
    restarts_75: int = 0
    exit_codes: list[int] = field(default_factory=list)
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    feed_slots: int = 0
    events_slots: int = 0
    slot_rate_share: float | None = None  # slots granted per second ÷ the key's requests/s
    baseline: bool = False  # a single run, limiters in memory, no kills
    error: str | None = None


def task_argv(a: Any, api_url: str, dsn: str, work: Path, n: int, i: int) -> list[str]:
    """Task I of N; N = 0: the baseline, one single run."""
    if n == 0:
        return [*_common(a, api_url, dsn, work / "data-single"), "--quiet"]
    argv = _common(a, api_url, dsn, work / f"data-{n}-{i}")
    return [*argv, "--shard-index", str(i), "--shard-count", str(n), "--quiet"]


class Engine:
    """What an orchestrator does with N tasks: runs them, restarts a killed one (and one
    that asked to be retried, exit 75) with its index after ``restart_delay``."""

    def __init__(self, a: Any, n: int, api_url: str, dsn: str, work: Path, env: dict[str, str]):
        self.a, self.n, self.api_url, self.dsn, self.work, self.env = a, n, api_url, dsn, work, env
        self.children = Children()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restart: dict[int, float] = {}  # index -> when
        self.done: set[int] = set()
        self.res = Result(tasks=n, load_before=os.getloadavg())
        self.t0 = time.monotonic()

    def spawn(self, i: int) -> None:
        log = self.work / f"task-{self.n}-{i}-{time.monotonic_ns()}"
        argv = task_argv(self.a, self.api_url, self.dsn, self.work, self.n, i)
        self.procs[i] = self.children.spawn(argv, cwd=self.work, env=self.env, log=log)
        self.res.pids[self.procs[i].pid] = i
        for k in self.res.kills:
            if k.index == i and k.replacement_pid is None:
                k.replacement_pid = self.procs[i].pid

    def kill_one(self, rng: random.Random, now: float) -> None:
        live = [i for i in self.procs if i not in self.done and i not in self.restart]
        if not live:
            return
        i = rng.choice(live)
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        self.res.kills.append(Kill(at=time.time(), index=i, pid=self.procs[i].pid))
        self.restart[i] = now + self.a.restart_delay

    def reap(self, now: float) -> None:
        for i, p in self.procs.items():
            if i in self.done or i in self.restart or p.poll() is None:
                continue
            self.res.exit_codes.append(p.returncode)
            if p.returncode == 75:  # retryable: the engine retries it
                self.res.restarts_75 += 1
                self.restart[i] = now + self.a.restart_delay
                continue
            if p.returncode != 0:
                self.res.error = f"task {i} exited {p.returncode}"
            self.done.add(i)

    def run(self) -> Result:
        """N tasks to the end, with ``kills`` SIGKILLs spread over the expected time."""
        a, res = self.a, self.res
        rng = random.Random(a.seed + self.n)
        expected_s = a.events / (PAGE * (10 / 60 + 200 / 300) * a.time_scale) / 0.8
        kill_at = sorted(rng.uniform(0.1, 0.7) * expected_s for _ in range(a.kills))
        for i in range(max(1, self.n)):
            self.spawn(i)
        try:
            while len(self.done) < max(1, self.n):
                now = time.monotonic() - self.t0
                if now > a.timeout:
                    res.error = f"timed out after {a.timeout:.0f} s"
                    break
                if kill_at and now >= kill_at[0] and self.n > 0:
                    kill_at.pop(0)
                    self.kill_one(rng, now)
                for i, due in list(self.restart.items()):
                    if now >= due:
                        del self.restart[i]
                        self.spawn(i)
                self.reap(now)
                time.sleep(0.05)
        finally:
            self.children.stop_all()
        res.wall_s = time.monotonic() - self.t0
        res.load_after = os.getloadavg()
        return res


Log = list[tuple[str, str, float, int]]


def _common(a: Any, api_url: str, dsn: str, data: Path) -> list[str]:
    argv = [sys.executable, "-m", "etl", "ingest", "--api-url", api_url, "--api-key", API_KEY]
    return [*argv, "--database-url", dsn, "--data-dir", str(data)]


async def check_db(
    dsn: str, expected: set[str]
) -> tuple[int, bool, list[tuple[str, str, float, int]]]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = {str(r[0]) for r in await conn.fetch("SELECT id FROM events")}
        log = await conn.fetch("SELECT lane, holder, at, slots FROM rate_budget_log ORDER BY at")
    finally:
        await conn.close()
    rows = [(r["lane"], r["holder"], float(r["at"]), int(r["slots"])) for r in log]
    return len(ids), ids == expected, rows


def reuse_after(kill: Kill, log: Log, scale: float, pids: dict[int, int]) -> None:
    """From the kill until the tasks that were running beside it have booked the whole
    budget again: the first time one of them asked and the key's limiter had no start free
    at once (a log row of 0 slots: refused, or granted only ahead), so no part of the
    budget, the dead task's included, was left unused. The survivors are the other
    indexes' processes that asked in the 2 s before the kill and again in the 2 s after it
    (a task killed at the same moment, or one that finished its share, is none). Not
    measurable (None) without a survivor."""

    def index(holder: str) -> int | None:
        return pids.get(int(holder.rsplit(":", 1)[-1]))

    before = {h for _, h, at, _ in log if kill.at - 2.0 <= at < kill.at}
    after = {h for _, h, at, _ in log if kill.at <= at < kill.at + 2.0}
    survivors = {h for h in before & after if index(h) not in (None, kill.index)}
    booked = [
        at
        for _, h, at, slots in log
        if h in survivors and slots == 0 and kill.at <= at < kill.at + 30
    ]
    if booked:
        d = min(booked) - kill.at
        kill.reuse_wall_s = round(d, 2)
        kill.reuse_api_s = round(d * scale, 1)


def one(
    a: Any, n: int, root: str, pg: Postgres, work: Path, env: dict[str, str], ids: set[str]
) -> Result:
    s0 = sandbox_stats(root)
    with database(pg) as dsn:
        res = Engine(a, n, root + "/api/v1", dsn, work, env).run()
        res.events, res.exact, log = asyncio.run(check_db(dsn, ids))
    s1 = sandbox_stats(root)

    def delta(kind: str) -> int:
        return sum(s1[kind].values()) - sum(s0[kind].values())

    res.requests, res.rate_limited = delta("requests"), delta("rate_limited")
    for kind, into in (("requests", res.requests_by), ("rate_limited", res.rate_limited_by)):
        for route, count in s1[kind].items():
            if count - s0[kind].get(route, 0):
                into[route] = count - s0[kind].get(route, 0)
    res.share_429 = res.rate_limited / res.requests if res.requests else 0.0
    bound = PAGE * (10 / 60 + 200 / 300) * a.time_scale
    res.combined = a.events / res.wall_s / bound
    res.feed_slots = sum(s for lane, _, _, s in log if lane == "feed")
    res.events_slots = sum(s for lane, _, _, s in log if lane == "events")
    res.baseline = n == 0
    if n >= 2:
        for k in res.kills:
            reuse_after(k, log, a.time_scale, res.pids)
    if log:
        span = log[-1][2] - log[0][2]
        per_s = (10 / 60 + 200 / 300) * a.time_scale
        slots = res.feed_slots + res.events_slots
        res.slot_rate_share = slots / span / per_s if span > 0 else None
    return res


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def report(results: list[Result], a: Any) -> None:
    print(
        f"\n{'N':>6} {'wall s':>7} {'combined':>8} {'slots/s':>7} {'429s':>6} {'requests':>8} "
        f"{'exact':>5} "
        f"{'kills':>5} {'reuse wall s (API s), per kill':<34} {'load before→after':<18}"
    )
    for r in results:
        reuse = [k for k in r.kills if k.reuse_wall_s is not None]
        if reuse:
            worst = max(k.reuse_wall_s or 0 for k in reuse)
            text = f"max {worst:.2f} ({worst * a.time_scale:.1f}) of {len(reuse)}"
        else:
            text = "n/a" if r.tasks <= 1 else "none measurable"
        share = "-" if r.slot_rate_share is None else f"{r.slot_rate_share:.1%}"
        print(
            f"{'single' if r.baseline else r.tasks:>6} {r.wall_s:>7.1f} {r.combined:>8.1%} "
            f"{share:>7} {r.share_429:>6.2%} "
            f"{r.requests:>8,} {'yes' if r.exact else 'NO':>5} {len(r.kills):>5} {text:<34} "
            f"{r.load_before[0]:.1f}→{r.load_after[0]:.1f}"
            + (f"  ERROR {r.error}" if r.error else "")
        )
    print(
        f"targets: combined ≥ {TARGET_COMBINED:.0%}, 429s ≤ {TARGET_429:.1%}, exact ids, reuse ≤ "
        f"{TARGET_REUSE_API_S:g} s of API time; bound = 5000·(10/60+200/300)·{a.time_scale:g} "
        f"= {PAGE * (10 / 60 + 200 / 300) * a.time_scale:,.0f} ev/s; {os.cpu_count()} CPUs; "
        "slots/s: slots granted per second (rate_budget_log) ÷ the key's requests per second; "
        "single: one run without task mode (limiters in memory), no kills"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--events", type=int, default=3_000_000)
    p.add_argument("--time-scale", type=float, default=10.0)
    p.add_argument("--latency-per-page", type=float, default=3.5)
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--restart-delay", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the single run (limiters in memory)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "tasks.json")
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.events, a.time_scale, a.latency_per_page)
        return
    from etl.sandbox import SandboxConfig
    from etl.sandbox.dataset import Dataset

    ids = set(Dataset(SandboxConfig(events=a.events)).ids())
    env = child_env(ROOT)
    children = Children()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        work = Path(tmp)
        pg = Postgres(a.database_url, None)
        try:
            _, root = start_sandbox(children, work, env, a)
            for n in ([] if a.no_baseline else [0]) + a.tasks:
                results.append(one(a, n, root, pg, work, env, ids))
                report(results[-1:], a)
                time.sleep(300 / a.time_scale + 5)  # the feed's window forgets this run
        finally:
            children.stop_all()
    report(results, a)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "results": [asdict(r) for r in results],
        "cpus": os.cpu_count(),
    }
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
