"""Issue 11's scenarios: the real limits against servers of different latency.

/events 10 per 60 s and the feed ~200 per 300 s, time-scaled (x10 by default), against pages
of a constant 3.5 s (today's scenario), of 3.5 s sharing the server's capacity as spec §6
records, of 6 s and of 0.1 s; and ``scale-1``, the shared-capacity server in real time
(about 13 minutes for 3M events; only on request). ``etl ingest`` runs with its defaults (no
``--feed-window``: the throttle's window is learnt). Per run: events/s as a share of the
budget bound 5000 x (10/60 + 200/300) x scale, the 429 share, the peak in flight per lane.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ingestkit.common import PAGE, TARGET_429_SHARE, TARGET_BUDGET_SHARE
from ingestkit.runs import Ctx, measure_ingest
from ingestkit.services import Sandbox, database

# name -> (sandbox args, time scale: None for --time-scale)
LATENCY_SCENARIOS: dict[str, tuple[list[str], float | None]] = {
    "real-limits": (["--latency-per-page", "3.5", "--capacity", "0"], None),
    "shared-capacity": (["--latency-per-page", "3.5"], None),
    "slow-server": (["--latency-per-page", "6"], None),
    "fast-server": (["--latency-per-page", "0.1"], None),
    "scale-1": (["--latency-per-page", "3.5"], 1.0),
}
TARGET_SCALE_1_WALL_S = 13.5 * 60
TARGET_LATENCY_RSS_MB = 120.0


def _per_lane(extra: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in extra.items() if k.startswith(prefix)}


def scenario_latency(ctx: Ctx, name: str) -> None:
    a = ctx.args
    sb_extra, fixed_scale = LATENCY_SCENARIOS[name]
    scale = fixed_scale or a.time_scale
    sb_args = ["--time-scale", f"{scale:g}", *sb_extra]
    bound = PAGE * (10 / 60 + 200 / 300) * scale
    sandbox = Sandbox(ctx.children, ctx.work, ctx.env, ctx.events, sb_args)
    try:
        with database(ctx.pg) as dsn:
            timeout = a.timeout or max(300.0, 4 * ctx.events / bound)
            run = measure_ingest(ctx, name, sandbox, dsn, [], timeout)
    finally:
        sandbox.close()
    share = run.events_per_s / bound
    share_429 = (run.rate_limited or 0) / run.requests if run.requests else None
    extra = run.extra.pop("run_extra", None) or {}
    run.extra.update(
        {
            "sandbox_args": sb_args,
            "ingest_args": [],
            "time_scale": scale,
            "budget_bound_events_per_s": round(bound, 1),
            "budget_share": round(share, 4),
            "budget_share_in_run": round(run.run_events_per_s / bound, 4)
            if run.run_events_per_s
            else None,
            "share_429": None if share_429 is None else round(share_429, 5),
            "peak_in_flight": _per_lane(extra, "peak_in_flight_"),
            "in_flight_limit_at_end": _per_lane(extra, "in_flight_limit_"),
            "splits": extra.get("splits", 0),
        }
    )
    ctx.runs.append(run)
    ctx.results[name] = asdict(run)
    ctx.target(f"{name}: events/s ÷ budget bound", share, ">=", TARGET_BUDGET_SHARE, "%")
    ctx.target(f"{name}: 429s ÷ requests", share_429, "<=", TARGET_429_SHARE, "%")
    if name == "scale-1":
        ctx.target("scale-1: wall time", run.wall_s, "<=", TARGET_SCALE_1_WALL_S, "s")
    ctx.target(f"{name}: peak RSS", run.peak_rss_mb, "<=", TARGET_LATENCY_RSS_MB, "MB")


def print_latency(ctx: Ctx, fmt: Any) -> None:
    """One line per latency scenario: bound, shares, 429s, peak in flight per lane."""
    rows = [(n, ctx.results[n]["extra"]) for n in LATENCY_SCENARIOS if n in ctx.results]
    if not rows:
        return
    print(
        f"\n{'latency scenario':<16} {'scale':>5} {'bound ev/s':>10} {'wall':>6} "
        f"{'in-run':>6} {'429s':>6}  peak in flight per lane (limit at the end)"
    )
    for name, e in rows:
        peaks = ", ".join(
            f"{lane} {peak} ({e['in_flight_limit_at_end'].get(lane, '?')})"
            for lane, peak in e["peak_in_flight"].items()
        )
        print(
            f"{name:<16} {e['time_scale']:>5g} {e['budget_bound_events_per_s']:>10,.0f} "
            f"{e['budget_share']:>6.1%} {fmt(e['budget_share_in_run'], '.1%'):>6} "
            f"{fmt(e['share_429'], '.2%'):>6}  {peaks}"
        )
