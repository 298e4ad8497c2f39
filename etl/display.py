"""Rendering of progress: plain log lines (cron, Docker logs) or a rich live view (TTY).

The only module importing rich (besides the CLI). Time comes from an injected ``get_time``
so tests render to a ``Console(file=io.StringIO(), ...)`` with a fake clock.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from etl.fmt import human_duration
from etl.models import Reporter, RunCounters, ShardState
from etl.settings import DEFAULTS
from etl.status import StatusSnapshot


class ManagedReporter(Reporter, Protocol):
    """A Reporter used as a context manager (the rich one owns a Live display)."""

    def __enter__(self) -> ManagedReporter: ...

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class LogReporter:
    """One concise line every ``interval_s`` (and for each message)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        interval_s: float = DEFAULTS.progress_interval_s,
        fmt: str = "text",
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.fmt = fmt
        self.quiet = quiet
        self.clock = clock
        self.started = clock()
        self._last = self.started

    def __enter__(self) -> LogReporter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _emit(self, text: str, **fields: object) -> None:
        if self.fmt == "json":
            doc = {"ts": round(time.time(), 3), "msg": text, **fields}
            self.stream.write(json.dumps(doc) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.quiet:
            self._emit(text)

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        now = self.clock()
        if self.quiet or now - self._last < self.interval_s:
            return
        self._last = now
        elapsed = max(1e-9, now - self.started)
        total = counters.extra.get("expected_total", 0)
        loaded = counters.extra.get("loaded_before", 0) + counters.inserted
        done = sum(1 for s in shards if s.status == "done")
        pct = f" ({100 * loaded / total:.1f}%)" if total else ""
        self._emit(
            f"loaded {loaded:,}/{total:,}{pct} · {counters.inserted / elapsed:,.0f} ev/s · "
            f"shards {done}/{len(shards)} · requests {counters.requests} · "
            f"429s {counters.rate_limited} · retries {counters.retries} · "
            f"quarantined {counters.quarantined}",
            loaded=loaded,
            total=total,
            events_per_s=round(counters.inserted / elapsed, 1),
            requests=counters.requests,
            rate_limited=counters.rate_limited,
            retries=counters.retries,
            quarantined=counters.quarantined,
        )


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


def _figures(f: Figures, title: str) -> RenderableType:
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


def _shard_table(lines: Sequence[ShardLine], max_rows: int) -> RenderableType:
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


class RichReporter:
    """The live view of ``etl ingest`` on a TTY; a context manager owning a rich ``Live``.

    ``update`` and ``message`` never block: they redraw in memory and write to the console.
    """

    def __init__(
        self,
        console: Console,
        *,
        get_time: Callable[[], float] = time.monotonic,
        window_s: float = 10.0,
        max_shard_rows: int = 16,
    ) -> None:
        self.console = console
        self.get_time = get_time
        self.window_s = window_s
        self.max_shard_rows = max_shard_rows
        self.started = get_time()
        self._samples: deque[tuple[float, int]] = deque()
        self._view: RenderableType = Text("starting…")
        self._live = Live(
            get_renderable=lambda: self._view,
            console=console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> RichReporter:
        self._live.start(refresh=True)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()

    def message(self, text: str) -> None:
        self.console.print(Text(text))

    def rate_now(self, inserted: int) -> float | None:
        """Events/s over the last ``window_s`` seconds (None until two samples exist)."""
        now = self.get_time()
        self._samples.append((now, inserted))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        return (inserted - n0) / (now - t0) if now > t0 else None

    def render(self, counters: RunCounters, shards: Sequence[ShardState]) -> RenderableType:
        now = self.get_time()
        elapsed = now - self.started
        total = counters.extra.get("expected_total") or None
        loaded = counters.extra.get("loaded_before", 0) + counters.inserted
        rate_now = self.rate_now(counters.inserted)
        rate_avg = counters.inserted / elapsed if elapsed > 0 else None
        rate = rate_now or rate_avg
        eta = max(0, total - loaded) / rate if total and rate else None
        figures = Figures(
            loaded=loaded,
            total=total,
            rate_now=rate_now,
            rate_avg=rate_avg,
            eta_s=eta,
            elapsed_s=elapsed,
            requests=counters.requests,
            rate_limited=counters.rate_limited,
            retries=counters.retries,
            cursor_resets=counters.cursor_resets,
            quarantined=counters.quarantined,
            duplicates=counters.duplicates,
        )
        lines = [
            ShardLine(
                s.shard_id,
                s.status,
                s.events,
                dt.datetime.fromtimestamp(s.position.ts_ms / 1000, dt.UTC) if s.position else None,
            )
            for s in shards
        ]
        return Group(_figures(figures, "loaded"), _shard_table(lines, self.max_shard_rows))

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        self._view = self.render(counters, shards)
        self._live.refresh()


def render_status(snapshot: StatusSnapshot, *, max_shard_rows: int = 32) -> RenderableType:
    """What ``etl status`` prints: the same figures as the live view, read from the tables."""
    s = snapshot
    if not s.initialized:
        return Text("no ingest has run against this database yet")
    run = s.run
    if run is None:
        head = Text("no run recorded yet")
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
            head.append(f"\nerror: {run.error}", "red")
    figures = Figures(
        loaded=s.loaded,
        total=s.expected_total,
        rate_now=s.rate_now_per_s,
        rate_avg=s.rate_avg_per_s,
        eta_s=s.eta_s,
        elapsed_s=run.duration_s if run else None,
        requests=run.requests if run else 0,
        rate_limited=run.rate_limited if run else 0,
        retries=run.retries if run else 0,
        cursor_resets=run.cursor_resets if run else 0,
        quarantined=s.quarantined,
        duplicates=s.duplicates,
    )
    lines = [ShardLine(r.shard_id, r.status, r.events, r.position) for r in s.shards]
    return Group(head, _figures(figures, "loaded"), _shard_table(lines, max_shard_rows))


_RUN_STYLE = {"running": "yellow", "succeeded": "green", "partial": "yellow", "failed": "red"}


def make_reporter(
    *, quiet: bool, log_format: str, interval_s: float, stream: TextIO, is_tty: bool
) -> ManagedReporter:
    """The live view on a TTY (unless --quiet or --log-format json), else log lines.

    The console is not forced to colour, so rich honours ``NO_COLOR`` (and ``TERM=dumb``).
    """
    if is_tty and not quiet and log_format != "json":
        return RichReporter(Console(file=stream, force_terminal=True))
    return LogReporter(stream, interval_s=interval_s, fmt=log_format, quiet=quiet)
