"""The printed report (runs, scenario notes, targets) and the machine description."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from ingestkit.common import ROOT
from ingestkit.latency import print_latency
from ingestkit.runs import Ctx
from ingestkit.virtual import print_virtual

# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _f(value: float | int | None, fmt: str = ",.0f") -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return format(value, fmt)


def print_report(ctx: Ctx) -> None:
    """The runs table, what each scenario adds, then the targets table."""
    _print_runs(ctx)
    _print_scenario_notes(ctx)
    _print_targets(ctx)


def _print_runs(ctx: Ctx) -> None:
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


def _print_scenario_notes(ctx: Ctx) -> None:
    print_latency(ctx, _f)
    print_virtual(ctx)
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


def _print_targets(ctx: Ctx) -> None:
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
