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
    lower: dt.datetime | None = None  # the slice's older bound

    @property
    def reached(self) -> dt.datetime | None:
        """How far down its slice the shard has read: its last event, but never below the
        slice (the last page of a shard reaches into the next one's, which loads those)."""
        if self.position is None or self.lower is None:
            return self.position
        return max(self.position, self.lower)


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
    """Running shards first, then pending, then done; at most ``max_rows`` (plus a summary).

    A shard reads its time slice newest first: "read down to" is the time of the last event
    it committed. Done shards whose slice held no event at all (e.g. the open-ended oldest one
    when the data is younger than the plan assumed) are counted, not listed.
    """
    order = {"running": 0, "pending": 1, "done": 2}
    empty = [s for s in lines if s.status == "done" and not s.events and s.position is None]
    listed = [s for s in lines if not (s.status == "done" and not s.events and s.position is None)]
    shown = sorted(listed, key=lambda s: order.get(s.status, 3))[:max_rows]
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    table.add_column("shard")
    table.add_column("status")
    table.add_column("events", justify="right")
    table.add_column("read down to (UTC)")
    for s in shown:
        at = s.reached.strftime("%Y-%m-%d %H:%M:%S") if s.reached else "–"
        table.add_row(
            s.shard_id, Text(s.status, _STATUS_STYLE.get(s.status, "")), f"{s.events:,}", at
        )
    counts = {k: sum(1 for s in lines if s.status == k) for k in ("running", "pending", "done")}
    notes = []
    if empty:
        notes.append(f"{len(empty)} empty (no event in its time slice), not listed")
    if len(listed) > len(shown):
        notes.append(f"{len(listed) - len(shown)} not shown")
    summary = Text(
        f"shards: {len(lines)} · running {counts['running']} · pending {counts['pending']} · "
        f"done {counts['done']}" + "".join(f" · {n}" for n in notes)
    )
    caption = Text(
        "each shard reads its time slice newest first; read down to: its last committed event",
        style="dim",
    )
    return Group(table, summary, caption) if shown else Group(summary)
