"""What `etl status` and `etl runs` print: the status view (once or live) and the runs table."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from etl.display.figures import Figures, ShardLine, figures_panel, shard_table
from etl.fmt import human_duration
from etl.read.views import BudgetRow, RunRow, StatusSnapshot, StreamRow, no_ingest


def render_status(
    snapshot: StatusSnapshot, *, max_shard_rows: int = 32, where: str = ""
) -> RenderableType:
    """What ``etl status`` prints: the same figures as the live view, read from the tables.

    ``where`` names the database it looked at (password redacted)."""
    s = snapshot
    if not s.initialized:
        nothing = Text(no_ingest(where))
        return Group(nothing, *_streams(s)) if s.streams else nothing
    parts: list[RenderableType] = [Text(f"database: {where}", style="dim")] if where else []
    run = s.run
    if run is None:
        parts.append(Text("no run recorded yet"))
    else:
        ended = f", ended {run.ended_at:%Y-%m-%d %H:%M:%S}" if run.ended_at else ""
        head = Text.assemble(
            (f"run {run.run_id} ", "bold"),
            (run.status, _RUN_STYLE.get(run.status, "")),
            f" · started {run.started_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC{ended}",
        )
        if run.status == "running" and s.heartbeat_age_s is not None:
            head.append(f" · heartbeat {human_duration(s.heartbeat_age_s)} ago")
        if run.error:
            label = "why" if run.status == "incomplete" else "error"
            head.append(f"\n{label}: {run.error}", "red")
        parts.append(head)
    load = s.load
    if run is not None and load is not None and load is not run:
        parts.append(
            Text(
                f"run {run.run_id} found nothing new; rates and elapsed below are those of run "
                f"{load.run_id}, the last that loaded events"
                f" ({load.inserted:,}, ended {_when(load.ended_at)} UTC)",
                style="dim",
            )
        )
    if not s.shards and run is not None and run.status != "running":
        parts.append(Text("no sync state: the next `etl ingest` plans a full sync", style="dim"))
    figures = Figures(
        loaded=s.ingested,
        total=s.expected_total,
        rate_now=s.rate_now_per_s,
        rate_avg=s.rate_avg_per_s,
        eta_s=s.eta_s,
        elapsed_s=load.duration_s if load else None,
        requests=run.requests if run else 0,
        rate_limited=run.rate_limited if run else 0,
        retries=run.retries if run else 0,
        cursor_resets=run.cursor_resets if run else 0,
        quarantined=s.quarantined,
        duplicates=s.duplicates,
    )
    lines = [ShardLine(r.shard_id, r.status, r.events, r.position, r.lower) for r in s.shards]
    parts.append(figures_panel(figures, "loaded"))
    if s.posted:
        parts.append(
            Text(
                f"+ {s.posted:,} recorded through `etl serve` (POST /events) · "
                f"{s.loaded:,} loaded in all",
                style="dim",
            )
        )
    parts.append(shard_table(lines, max_shard_rows))
    return Group(*parts, *_streams(s), *_budgets(s.budgets))


def _streams(s: StatusSnapshot) -> list[RenderableType]:
    """Declarative sources' streams (`etl sync`): one line each."""
    if not s.streams:
        return []
    table = Table(box=None, padding=(0, 1), header_style="bold", show_edge=False)
    for name in ("stream", "status", "rows", "quar.", "cursor"):
        table.add_column(
            name, no_wrap=True, justify="right" if name in ("rows", "quar.") else "left"
        )
    for r in s.streams:
        table.add_row(
            f"{r.source}.{r.stream}",
            Text(r.status, _RUN_STYLE.get(r.status, "")),
            f"{r.rows:,}",
            f"{r.quarantined:,}",
            (r.cursor or "–")[:19],
        )
    errors = [Text(f"{r.source}.{r.stream}: {r.error}", "red") for r in s.streams if r.error]
    return [Text("streams", "bold"), table, *errors]


def _budgets(budgets: tuple[BudgetRow, ...]) -> list[RenderableType]:
    """The rate budgets shared by tasks on one key (``etl.sharedrate``): one line per lane,
    named by the key's fingerprint (never the key)."""
    if not budgets:
        return []
    table = Table(box=None, padding=(0, 1), header_style="bold", show_edge=False)
    for name in ("key", "lane", "tasks", "slots/s", "learnt", "updated"):
        table.add_column(
            name,
            no_wrap=name != "learnt",
            justify="right" if name in ("tasks", "slots/s") else "left",
        )
    for b in budgets:
        table.add_row(
            f"{b.key_fp[:12]}…",
            b.lane,
            str(len(b.holders)),
            f"{b.slots_per_s:.2f}",
            _learnt(b),
            f"{human_duration(b.age_s)} ago",
        )
    tasks = sorted({h for b in budgets for h, _ in b.holders})
    lines: list[RenderableType] = [
        Text("rate budget shared by the tasks on a key (slots: the last minute)", "bold"),
        table,
    ]
    if tasks:
        lines.append(
            Text("tasks: " + ", ".join(tasks[:8]) + (" …" if len(tasks) > 8 else ""), style="dim")
        )
    return lines


def _learnt(b: BudgetRow) -> str:
    lim = b.limits
    window = lim.get("window_s")
    per = f" per {window:g} s" if window is not None else ""
    how = "" if lim.get("window_learnt") else " (window not learnt yet)"
    if b.lane == "feed":
        cap = lim.get("cap")
        text = f"cap {cap}{per}{how}" if cap is not None else f"no throttle met yet{how}"
        pace = lim.get("pace_per_s")
        if pace is not None:
            text += f" · pace {pace:.2f}/s"
        if lim.get("throttled"):
            text += f" · {lim['throttled']} × 429"
        return text
    limit = lim.get("limit")
    return f"{limit}{per}{how}" if limit is not None else "–"


_RUN_STYLE = {
    "running": "yellow",
    "succeeded": "green",
    "partial": "yellow",
    "failed": "red",
    "incomplete": "red",
}


async def watch_status(
    console: Console,
    read: Callable[[], Awaitable[StatusSnapshot]],
    *,
    interval_s: float,
    where: str = "",
) -> None:
    """Redraw the status view every ``interval_s`` until cancelled (Ctrl-C)."""
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(render_status(await read(), where=where), refresh=True)
            await asyncio.sleep(interval_s)


def streams_table(streams: tuple[StreamRow, ...]) -> Table:
    """`etl runs`: each declarative stream's last sync (`etl sync`)."""
    table = Table(
        title="streams (last sync; rows, quar. and pages are totals)", title_justify="left",
        box=None, padding=(0, 1),
        header_style="bold", show_edge=False,
    )  # fmt: skip
    for name in ("stream", "started (UTC)", "finished (UTC)", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("rows", "quar.", "pages"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in streams:
        table.add_row(
            f"{r.source}.{r.stream}",
            _when(r.started_at),
            _when(r.finished_at),
            r.status,
            f"{r.rows:,}",
            f"{r.quarantined:,}",
            f"{r.pages:,}",
            r.error or "",
        )
    return table


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "–"


ERROR_CHARS = 120  # of a run's error in the table (`etl runs --json` has all of it)


def _short(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1].rstrip() + "…"


def runs_table(runs: list[RunRow]) -> Table:
    """`etl runs`: one row per run, newest first."""
    table = Table(box=None, padding=(0, 1), header_style="bold", show_edge=False)
    for name in ("run", "started (UTC)", "ended (UTC)", "took", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("received", "inserted", "dupes", "quar.", "out of range"):
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("requests", "retries", "429s"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in runs:
        table.add_row(
            str(r.run_id),
            _when(r.started_at),
            _when(r.ended_at),
            human_duration(r.duration_s),
            r.status,
            f"{r.received:,}",
            f"{r.inserted:,}",
            f"{r.duplicates:,}",
            f"{r.quarantined:,}",
            f"{r.out_of_range:,}",
            f"{r.requests:,}",
            f"{r.retries:,}",
            f"{r.rate_limited:,}",
            _short(r.error or ""),
        )
    return table
