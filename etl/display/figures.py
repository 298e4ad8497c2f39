"""The pieces both views show: the headline figures and the shard table (rich renderables)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from etl.fmt import human_duration


@dataclass(frozen=True, slots=True)
class Figures:
    """What both the live view and ``etl status`` show; None means unknown."""

    loaded: int
    total: int | None
    rate_now: float | None
    rate_avg: float | None
    eta_s: float | None
    elapsed_s: float | None
    requests: int
    rate_limited: int
    retries: int
    cursor_resets: int
    quarantined: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ShardLine:
    shard_id: str
    status: str
    events: int
    position: dt.datetime | None


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ev/s"


def figures_panel(f: Figures, title: str) -> RenderableType:
    pct = 100.0 * f.loaded / f.total if f.total else None
    head = Text.assemble(
        (f"{title}  ", "bold"),
        (f"{f.loaded:,} / {f.total:,}" if f.total else f"{f.loaded:,} / ?", "bold cyan"),
        f"  {pct:.1f}%" if pct is not None else "",
        f" · duplicates {f.duplicates:,}",
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_row(head)
    if f.total:
        grid.add_row(ProgressBar(total=f.total, completed=min(f.loaded, f.total), width=60))
    eta = human_duration(f.eta_s) if f.eta_s is not None else "–"
    elapsed = human_duration(f.elapsed_s) if f.elapsed_s is not None else "–"
    grid.add_row(
        f"now {_rate(f.rate_now)} · average {_rate(f.rate_avg)} · ETA {eta} · elapsed {elapsed}"
    )
    grid.add_row(
        f"requests {f.requests:,} · 429s {f.rate_limited:,} · retries {f.retries:,} · "
        f"cursor resets {f.cursor_resets:,} · quarantined {f.quarantined:,}"
    )
    return grid


_STATUS_STYLE = {"done": "green", "running": "yellow", "pending": "dim"}


def shard_table(lines: Sequence[ShardLine], max_rows: int) -> RenderableType:
    """Running shards first, then pending, then done; at most ``max_rows`` (plus a summary)."""
    order = {"running": 0, "pending": 1, "done": 2}
    shown = sorted(lines, key=lambda s: order.get(s.status, 3))[:max_rows]
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    table.add_column("shard")
    table.add_column("status")
    table.add_column("events", justify="right")
    table.add_column("at (UTC)")
    for s in shown:
        at = s.position.strftime("%Y-%m-%d %H:%M:%S") if s.position else "–"
        table.add_row(
            s.shard_id, Text(s.status, _STATUS_STYLE.get(s.status, "")), f"{s.events:,}", at
        )
    counts = {k: sum(1 for s in lines if s.status == k) for k in ("running", "pending", "done")}
    summary = Text(
        f"shards: {len(lines)} · running {counts['running']} · pending {counts['pending']} · "
        f"done {counts['done']}"
        + (f" · {len(lines) - len(shown)} not shown" if len(lines) > len(shown) else "")
    )
    return Group(table, summary)
