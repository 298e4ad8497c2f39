"""Progress of `etl ingest`: plain log lines (cron, Docker logs) or a rich live view (TTY).

Time comes from an injected clock so tests render to a ``Console(file=io.StringIO(), ...)``
with a fake clock.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from etl.display.figures import Figures, ShardLine, figures_panel, shard_table
from etl.fmt import log_line
from etl.models import Reporter, RunCounters, ShardState
from etl.settings import DEFAULTS


class ManagedReporter(Reporter, Protocol):
    """A Reporter used as a context manager (the rich one owns a Live display)."""

    def __enter__(self) -> ManagedReporter: ...

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class LogReporter:
    """One concise line every ``interval_s`` (and for each message), each with its time:
    ``<ISO time> <text>``, or a JSON object per line (``fmt="json"``, see ``fmt.log_line``)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        interval_s: float = DEFAULTS.progress_interval_s,
        fmt: str = "text",
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        stamp: bool = True,
    ) -> None:
        self.stream = stream
        self.wall = wall
        self.stamp = stamp
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
        line = log_line(text, fmt=self.fmt, now_s=self.wall(), stamp=self.stamp, fields=fields)
        self.stream.write(line + "\n")
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


def _utc(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


class SmoothedRate:
    """An exponentially weighted rate over time (time constant ``tau_s``), for the ETA.

    The rate "now" (a 10 s window) swings with every 429 pause and every burst that follows
    it; an ETA divided by it jumps from minutes to seconds and back. Weighted by elapsed time,
    a 10 s stall moves this rate by ~15 % with the default minute, while a lasting change
    still shows within a few minutes.
    """

    def __init__(self, tau_s: float = 60.0) -> None:
        self.tau_s = tau_s
        self.value: float | None = None
        self._last: tuple[float, int] | None = None

    def update(self, now: float, count: int) -> float | None:
        if self._last is None:
            self._last = (now, count)
            return self.value
        t0, n0 = self._last
        dt_s = now - t0
        if dt_s <= 0:
            return self.value
        rate = (count - n0) / dt_s
        self._last = (now, count)
        if self.value is None:
            self.value = rate
        else:
            self.value += (1.0 - math.exp(-dt_s / self.tau_s)) * (rate - self.value)
        return self.value


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
        eta_tau_s: float = 60.0,
        max_shard_rows: int = 16,
    ) -> None:
        self.console = console
        self.get_time = get_time
        self.window_s = window_s
        self._eta_rate = SmoothedRate(eta_tau_s)
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
        rate = self._eta_rate.update(now, counters.inserted) or rate_avg
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
                _utc(s.position.ts_ms) if s.position else None,
                _utc(s.lower_ts) if s.lower_ts is not None else None,
            )
            for s in shards
        ]
        return Group(figures_panel(figures, "loaded"), shard_table(lines, self.max_shard_rows))

    def update(self, counters: RunCounters, shards: list[ShardState]) -> None:
        self._view = self.render(counters, shards)
        self._live.refresh()


def make_reporter(
    *, quiet: bool, log_format: str, interval_s: float, stream: TextIO, is_tty: bool
) -> ManagedReporter:
    """The live view on a TTY (unless --quiet or --log-format json), else log lines.

    The console is not forced to colour, so rich honours ``NO_COLOR`` (and ``TERM=dumb``).
    """
    if is_tty and not quiet and log_format != "json":
        return RichReporter(Console(file=stream, force_terminal=True))
    return LogReporter(stream, interval_s=interval_s, fmt=log_format, quiet=quiet, stamp=not is_tty)
