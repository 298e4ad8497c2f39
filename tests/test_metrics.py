"""Prometheus textfile output and the local delivery log file."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from pathlib import Path

import pytest

from etl.delivery import DeliveryLog
from etl.metrics import render_metrics, write_metrics
from etl.models import Delivery, RunCounters, ShardState
from etl.sources.events import EVENT_COLUMNS

# name{labels} value, as the exposition format defines a sample line.
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+]+)$")


def parse(text: str) -> dict[str, float]:
    """Samples by ``name{labels}``; fails on any line that is neither a sample nor HELP/TYPE."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        m = SAMPLE.match(line)
        assert m, f"not an exposition line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def run_counters() -> RunCounters:
    return RunCounters(
        received=1_010,
        inserted=1_000,
        duplicates=10,
        quarantined=3,
        requests=20,
        retries=4,
        rate_limited=2,
        cursor_resets=1,
        pages=20,
    )


SHARDS = [
    ShardState("a", None, None, status="done"),
    ShardState("b", None, None, status="done"),
    ShardState("c", None, None, status="running"),
]


def test_metrics_of_a_finished_run(tmp_path: Path) -> None:
    """After a run: counters, shard gauges, last-run success, timestamp and duration."""
    path = tmp_path / "etl.prom"
    write_metrics(
        path,
        run_counters(),
        SHARDS,
        run_status="succeeded",
        run_started_s=1_700_000_000,
        now_s=1_700_000_090.5,
        loaded_total=3_000,
        expected_total=3_000,
    )
    text = path.read_text()
    samples = parse(text)
    assert samples["etl_events_inserted_total"] == 1_000
    assert samples["etl_requests_total"] == 20
    assert samples["etl_rate_limited_total"] == 2
    assert samples["etl_retries_total"] == 4
    assert samples["etl_quarantined_total"] == 3
    assert samples['etl_shards{status="done"}'] == 2
    assert samples['etl_shards{status="running"}'] == 1
    assert samples['etl_shards{status="pending"}'] == 0
    assert samples["etl_last_run_success"] == 1
    assert samples['etl_last_run_status{status="succeeded"}'] == 1
    assert samples["etl_last_run_timestamp_seconds"] == 1_700_000_090.5
    assert samples["etl_run_duration_seconds"] == 90.5
    assert samples["etl_run_in_progress"] == 0
    assert samples["etl_events_loaded"] == 3_000
    assert "# TYPE etl_events_inserted_total counter" in text
    assert "# HELP etl_last_run_success " in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize(("status", "success"), [("failed", 0), ("partial", 0)])
def test_unsuccessful_run(status: str, success: int) -> None:
    """A failed or partial run reports last_run_success 0."""
    samples = parse(
        render_metrics(run_counters(), SHARDS, run_status=status, run_started_s=0, now_s=10)
    )
    assert samples["etl_last_run_success"] == success
    assert samples[f'etl_last_run_status{{status="{status}"}}'] == 1


def test_during_a_run_no_last_run_figures() -> None:
    """While running: in-progress 1, and no last-run success that would flap an alert."""
    samples = parse(
        render_metrics(run_counters(), SHARDS, run_status="running", run_started_s=0, now_s=10)
    )
    assert samples["etl_run_in_progress"] == 1
    assert "etl_last_run_success" not in samples


def test_write_replaces_the_file(tmp_path: Path) -> None:
    """Each write replaces the previous content whole."""
    path = tmp_path / "etl.prom"
    for inserted in (1, 2):
        write_metrics(
            path, RunCounters(inserted=inserted), [], run_status="running", run_started_s=0, now_s=1
        )
    assert parse(path.read_text())["etl_events_inserted_total"] == 2


def delivery(success: bool = True) -> Delivery:
    return Delivery(
        run_id=3,
        shard_id="s01",
        provider="datasync",
        sent_at=dt.datetime(2026, 1, 27, 19, 0, 0, 123000, tzinfo=dt.UTC),
        duration_ms=41.25,
        rows_received=5_000,
        rows_written=4_990 if success else 0,
        duplicates=9 if success else 0,
        quarantined=1 if success else 0,
        columns=EVENT_COLUMNS,
        success=success,
        error=None if success else "SinkError: connection lost",
        loaded_by="upsert" if success else None,
    )


def test_delivery_log_lines(tmp_path: Path) -> None:
    """One JSON line per batch: provider, time sent, rows, columns, success, error."""
    path = tmp_path / "logs" / "delivery.jsonl"
    with DeliveryLog(path) as hook:
        hook(delivery())
        hook(delivery(success=False))
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {
        "provider": "datasync",
        "sent_at": "2026-01-27T19:00:00.123+00:00",
        "run_id": 3,
        "shard_id": "s01",
        "rows_received": 5_000,
        "rows_written": 4_990,
        "duplicates": 9,
        "quarantined": 1,
        "columns": list(EVENT_COLUMNS),
        "success": True,
        "error": None,
        "duration_ms": 41.2,
        "loaded_by": "upsert",
    }
    assert (second["success"], second["error"], second["loaded_by"]) == (
        False,
        "SinkError: connection lost",
        None,
    )


def test_delivery_log_appends_and_rotates(tmp_path: Path) -> None:
    """A reopened log appends; past max_bytes it rotates to .1, .2 and drops the oldest."""
    path = tmp_path / "delivery.jsonl"
    with DeliveryLog(path) as hook:
        hook(delivery())
    with DeliveryLog(path, max_bytes=1, backups=2) as hook:
        for _ in range(4):
            hook(delivery())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["delivery.jsonl", "delivery.jsonl.1", "delivery.jsonl.2"]
    assert all(len(p.read_text().splitlines()) == 1 for p in tmp_path.iterdir())


def test_delivery_log_failure_never_raises(tmp_path: Path) -> None:
    """An unwritable log path is reported once in the log, never raised into the load; the
    warning reaches the run's reporter (so --log-format json carries it too)."""
    from etl.logs import route_logs
    from tests.ingest_harness import Recorder

    blocker = tmp_path / "file"
    blocker.write_text("")
    hook = DeliveryLog(blocker / "delivery.jsonl")
    reporter = Recorder()
    with route_logs(reporter):
        hook(delivery())
        hook(delivery())
    hook.close()
    warnings = [m for m in reporter.messages if "cannot write the delivery log" in m]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: ") and str(blocker) in warnings[0]
