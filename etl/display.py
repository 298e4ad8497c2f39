"""Rendering of progress: plain log lines (cron, Docker logs) or a rich live view (TTY)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

from etl.models import RunCounters, ShardState


def human_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class LogReporter:
    """One concise line every ``interval_s`` (and for each message)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        interval_s: float = 10.0,
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
