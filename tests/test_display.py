"""The live view, `etl status` rendering and the reporter choice, as strings (fake clock)."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from rich.console import Console

from etl.display import LogReporter, RichReporter, make_reporter, render_status
from etl.models import Position, RunCounters, ShardState
from etl.read.views import RunRow, ShardRow, StatusSnapshot

T0 = dt.datetime(2026, 1, 27, 19, 0, 0, tzinfo=dt.UTC)
T0_MS = int(T0.timestamp() * 1000)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def console() -> Console:
    return Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)


def output(c: Console) -> str:
    file = c.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def words(text: str) -> str:
    """``text`` with runs of whitespace (table padding) collapsed to one space."""
    return " ".join(text.split())


def counters(inserted: int, *, total: int = 10_000, before: int = 0) -> RunCounters:
    c = RunCounters(
        inserted=inserted, requests=42, rate_limited=3, retries=5, cursor_resets=1, quarantined=7
    )
    c.extra.update(expected_total=total, loaded_before=before)
    return c


def shards() -> list[ShardState]:
    return [
        ShardState("s00", None, None, Position(T0_MS), status="running", events=1_000),
        ShardState("s01", None, None, Position(T0_MS - 3_600_000), status="done", events=234),
        ShardState("s02", None, None, status="pending"),
    ]


def test_live_view_shows_progress_rates_eta_and_shards() -> None:
    """Loaded / total, %, rates now and on average, ETA, counters and one line per shard."""
    clock, con = FakeClock(), console()
    with RichReporter(con, get_time=clock) as reporter:
        reporter.update(counters(0), shards())
        clock.t += 10
        reporter.update(counters(1_234), shards())
    text = output(con)
    assert "1,234 / 10,000" in text
    assert "12.3%" in text
    assert "now 123 ev/s · average 123 ev/s · ETA 1m11s · elapsed 10s" in text
    assert "requests 42 · 429s 3 · retries 5 · cursor resets 1 · quarantined 7" in text
    assert "s00 running 1,000 2026-01-27 19:00:00" in words(text)
    assert "s01 done 234 2026-01-27 18:00:00" in words(text)
    assert "s02 pending 0 –" in words(text)
    assert "shards: 3 · running 1 · pending 1 · done 1" in text


def test_rate_now_uses_a_moving_window() -> None:
    """After a stall, the current rate drops to 0 while the average remembers the past."""
    clock = FakeClock()
    reporter = RichReporter(console(), get_time=clock, window_s=10)
    reporter.render(counters(0), [])
    for _ in range(2):
        clock.t += 10
        reporter.render(counters(1_000), [])
    c = Console(file=io.StringIO(), width=100, color_system=None)
    clock.t += 0.0
    c.print(reporter.render(counters(1_000), []))
    assert "now 0 ev/s · average 50 ev/s" in output(c)


def test_resumed_run_counts_events_loaded_before() -> None:
    """Events loaded by earlier runs count towards loaded / total."""
    clock, con = FakeClock(), console()
    reporter = RichReporter(con, get_time=clock)
    clock.t += 1
    con.print(reporter.render(counters(500, before=9_000), []))
    assert "9,500 / 10,000  95.0%" in output(con)


def test_unknown_total_and_messages() -> None:
    """Without a total the view says '?'; messages print above the live view."""
    con = console()
    with RichReporter(con, get_time=FakeClock()) as reporter:
        reporter.message("no DATABASE_URL: using embedded PostgreSQL")
        reporter.update(counters(10, total=0), [])
    text = output(con)
    assert "no DATABASE_URL: using embedded PostgreSQL" in text
    assert "10 / ?" in text and "ETA –" in text


def test_many_shards_are_summarised() -> None:
    """Only the first rows show (running first); the rest are counted."""
    many = [ShardState(f"s{i:02d}", None, None, status="done", events=1) for i in range(30)]
    many.append(ShardState("s99", None, None, status="running"))
    con = console()
    con.print(RichReporter(con, get_time=FakeClock(), max_shard_rows=5).render(counters(1), many))
    text = output(con)
    assert text.index("s99") < text.index("s00")
    assert "s05" not in text and "26 not shown" in text


def snapshot(status: str = "running", error: str | None = None) -> StatusSnapshot:
    now = T0 + dt.timedelta(minutes=10)
    run = RunRow(
        run_id=7,
        status=status,
        strategy="auto",
        started_at=T0,
        ended_at=None if status == "running" else now,
        heartbeat_at=now - dt.timedelta(seconds=3),
        received=3_100,
        inserted=3_000,
        duplicates=100,
        quarantined=2,
        requests=12,
        retries=4,
        rate_limited=1,
        cursor_resets=0,
        pages=6,
        out_of_range=0,
        expected_total=3_000_000,
        error=error,
        host="h",
        pid=1,
    )
    return StatusSnapshot(
        taken_at=now,
        initialized=True,
        loaded=1_500_000,
        duplicates=100,
        quarantined=2,
        shards=(ShardRow("s00", "running", 1_500_000, T0, now, now),),
        run=run,
        rate_now_per_s=2_500.0,
    )


def test_render_status_of_a_live_run() -> None:
    """`etl status` shows the run, loaded / expected, %, rates, ETA, counters and shards."""
    con = console()
    con.print(render_status(snapshot()))
    text = output(con)
    assert "run 7 running · started 2026-01-27 19:00:00 UTC · heartbeat 3s ago" in text
    assert "1,500,000 / 3,000,000  50.0%" in text
    assert "now 2,500 ev/s · average 5 ev/s · ETA 10m00s · elapsed 9m57s" in text
    assert "requests 12 · 429s 1 · retries 4 · cursor resets 0 · quarantined 2" in text
    assert "s00 running 1,500,000 2026-01-27 19:00:00" in words(text)


def test_render_status_of_a_failed_run_and_of_nothing() -> None:
    """A failed run shows its error; a fresh database says no ingest has run."""
    con = console()
    con.print(render_status(snapshot("failed", "SinkError: disk full")))
    con.print(render_status(StatusSnapshot(taken_at=T0, initialized=False)))
    text = output(con)
    assert "run 7 failed" in text and "error: SinkError: disk full" in text
    assert "ETA –" in text
    assert "no ingest has run against this database yet" in text


def test_log_reporter_emits_every_interval() -> None:
    """Off a TTY: one line per interval, text or JSON."""
    clock, stream = FakeClock(), io.StringIO()
    reporter = LogReporter(stream, interval_s=10, fmt="json", clock=clock)
    reporter.update(counters(100), shards())
    clock.t += 10
    reporter.update(counters(1_234), shards())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert (doc["loaded"], doc["total"], doc["rate_limited"]) == (1_234, 10_000, 3)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("quiet", "log_format", "is_tty", "expected"),
    [
        (False, "text", True, RichReporter),
        (True, "text", True, LogReporter),
        (False, "json", True, LogReporter),
        (False, "text", False, LogReporter),
    ],
)
def test_make_reporter_choice(quiet: bool, log_format: str, is_tty: bool, expected: type) -> None:
    """The live view only on a TTY, and not with --quiet or --log-format json."""
    reporter = make_reporter(
        quiet=quiet, log_format=log_format, interval_s=5, stream=FakeTTY(), is_tty=is_tty
    )
    assert type(reporter) is expected


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NO_COLOR set, the live view on a TTY writes no colour codes."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = FakeTTY()
    reporter = make_reporter(
        quiet=False, log_format="text", interval_s=5, stream=stream, is_tty=True
    )
    with reporter:
        reporter.update(counters(5), shards())
    text = stream.getvalue()
    assert "running" in text and "\x1b[33m" not in text and "\x1b[32m" not in text
    monkeypatch.delenv("NO_COLOR")
    stream = FakeTTY()
    with make_reporter(
        quiet=False, log_format="text", interval_s=5, stream=stream, is_tty=True
    ) as r:
        r.update(counters(5), shards())
    assert "\x1b[33m" in stream.getvalue()  # the same view is coloured without NO_COLOR


def test_log_records_of_the_sink_come_out_as_json_lines_with_json_format() -> None:
    """With --log-format json, a warning logged by the sink is one JSON line like the
    progress lines, not a stray text line (logging goes through the reporter)."""
    import logging

    from etl.logs import route_logs

    out = io.StringIO()
    reporter = LogReporter(out, fmt="json")
    with route_logs(reporter):
        logging.getLogger("etl.sink.postgres").warning("could not record %s", "a batch")
        logging.getLogger("etl.sink.postgres").debug("not shown at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["msg"] == "warning: could not record a batch"
