"""End-to-end ingest benchmark: sandbox + PostgreSQL + ``etl ingest``, against issue 4's targets.

Starts PostgreSQL (an embedded one in a temp dir unless ``--database-url``) and the sandbox
(``python -m etl sandbox``) and runs ``python -m etl ingest`` as a separate process per
scenario, each on a fresh database (CREATE DATABASE / DROP). Per run it records events, wall
time, events/s, CPU seconds of the ingest process (user+sys from ``os.wait4``'s rusage), of
the sandbox and of PostgreSQL (psutil deltas), peak RSS of the ingest (``ru_maxrss``), and the
requests / 429s / retries of the run (its ``ingest_runs`` row). Scenarios:

    real-limits, shared-capacity, slow-server, fast-server (and scale-1, on request)
                 the sandbox under the real limits time-scaled (x10: rate limit 10/60 s,
                 feed throttle 200/300 s, all divided by 10) with pages of a constant 3.5 s,
                 of 3.5 s sharing the server's capacity (spec §6), of 6 s and of 0.1 s;
                 ingest with its defaults; events/s as a share of the budget bound
                 5000 * (10/60 + 200/300) * time_scale, the 429 share, the peak in flight
                 per lane (ingestkit/latency.py). scale-1: shared capacity in real time
    virtual      the same five scenarios in virtual time: the client's limiters and
                 in-flight limits against the sandbox's throttles and capacity model, no
                 CPU or I/O time (ingestkit/virtual.py): the budget logic alone, whatever
                 the machine's load
    unthrottled  sandbox ``--unlimited``; then a pure-COPY baseline of the same rows in the
                 same run (binary COPY out, then timed binary COPY into an identical empty
                 table, on 1 and on 2 connections)
    dlt          the same unthrottled dataset through dlt's ``rest_api`` source
                 (bench/dlt_peer.py, own process), write disposition merge (and append)
    memory       peak RSS of the unthrottled ingest at 100k and at the full size
    status       ``etl status --json`` as a process (median of 5) and ``read_status(dsn)``
                 in-process (median of 20), on the unthrottled run's database

Prints one table and writes bench/results/ingest.json (``--quick``: ingest-quick.json).

    .venv/bin/python bench/bench_ingest.py                     # everything but scale-1
    .venv/bin/python bench/bench_ingest.py --scenarios scale-1 # ~13 min of real time
    .venv/bin/python bench/bench_ingest.py --quick             # 300k events, smoke run
    .venv/bin/python bench/bench_ingest.py --scenarios unthrottled status \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from ingestkit.common import DEFAULT_SCENARIOS, RESULTS_DIR, ROOT, SCENARIOS
from ingestkit.latency import LATENCY_SCENARIOS, scenario_latency
from ingestkit.procs import Children, child_env
from ingestkit.report import machine_info, print_report
from ingestkit.runs import Ctx, Run
from ingestkit.scenarios import (
    scenario_dlt,
    scenario_memory,
    scenario_unthrottled,
)
from ingestkit.services import Postgres
from ingestkit.virtual import scenario_virtual

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(DEFAULT_SCENARIOS))
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
    ap.add_argument(
        "--time-scale", type=float, default=10.0, help="time scale of the latency scenarios"
    )
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

    if "virtual" in selected:
        guarded("virtual", scenario_virtual, ctx)
    for name in LATENCY_SCENARIOS:
        if name in selected:
            guarded(name, scenario_latency, ctx, name)
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
