"""Prometheus text exposition format for node_exporter's textfile collector (``--metrics-file``).

``write_metrics`` renders the figures of the current run and replaces the file atomically
(temp file in the same directory, then ``os.replace``), so the collector never reads half a
file. Point node_exporter's ``--collector.textfile.directory`` at the file's directory; the
name must end in ``.prom``.

Counters (``*_total``) are per run: they restart at 0 with each run, which Prometheus'
``rate()``/``increase()`` treat as a counter reset. ``etl_last_run_*`` are written only once a
run has ended (``run_status`` other than ``running``); during a run ``etl_run_in_progress`` is 1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from etl.models import FINAL_STATUSES, RunCounters, ShardState

SHARD_STATUSES = ("pending", "running", "done")


def _metric(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
        lines.append(f"{name}{labels} {text}")
    return lines


def render_metrics(
    counters: RunCounters,
    shards: Sequence[ShardState],
    *,
    run_status: str,
    run_started_s: float,
    now_s: float,
    loaded_total: int | None = None,
    expected_total: int | None = None,
) -> str:
    """The exposition text. ``run_started_s`` and ``now_s`` are Unix times (seconds)."""
    c = counters
    out: list[str] = []

    def add(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
        out.extend(_metric(name, kind, help_text, [(labels, value)]))

    add(
        "etl_events_received_total",
        "counter",
        "Events received from the API in this run.",
        c.received,
    )
    add("etl_events_inserted_total", "counter", "New events inserted in this run.", c.inserted)
    add("etl_events_duplicate_total", "counter", "Events already present (skipped).", c.duplicates)
    add("etl_quarantined_total", "counter", "Events quarantined as invalid.", c.quarantined)
    add("etl_requests_total", "counter", "HTTP requests sent to the API.", c.requests)
    add("etl_rate_limited_total", "counter", "HTTP 429 responses received.", c.rate_limited)
    add("etl_retries_total", "counter", "Requests retried after a transient failure.", c.retries)
    add("etl_cursor_resets_total", "counter", "Expired cursors re-anchored.", c.cursor_resets)
    add("etl_pages_total", "counter", "Pages fetched.", c.pages)
    out.extend(
        _metric(
            "etl_shards",
            "gauge",
            "Shards of the sync by status.",
            [
                (f'{{status="{s}"}}', sum(1 for x in shards if x.status == s))
                for s in SHARD_STATUSES
            ],
        )
    )
    if loaded_total is not None:
        add("etl_events_loaded", "gauge", "Events in the table (progress counters).", loaded_total)
    if expected_total:
        add("etl_events_expected", "gauge", "Events the API reports in total.", expected_total)
    if "missing" in c.extra:  # judged once every shard is done
        add(
            "etl_events_missing",
            "gauge",
            "Events the source states that the table lacks after a finished sync (0: complete).",
            c.extra["missing"],
        )
    running = run_status not in FINAL_STATUSES
    add("etl_run_in_progress", "gauge", "1 while a run is going on.", 1 if running else 0)
    add(
        "etl_run_duration_seconds",
        "gauge",
        "Duration of the current or last run.",
        round(max(0.0, now_s - run_started_s), 3),
    )
    if not running:
        add(
            "etl_last_run_success",
            "gauge",
            "1 if the last run completed the sync, else 0.",
            1 if run_status == "succeeded" else 0,
        )
        out.extend(
            _metric(
                "etl_last_run_status",
                "gauge",
                "Outcome of the last run (1 for its status).",
                [(f'{{status="{s}"}}', 1 if s == run_status else 0) for s in FINAL_STATUSES],
            )
        )
        add("etl_last_run_timestamp_seconds", "gauge", "Unix time the last run ended.", now_s)
    return "\n".join(out) + "\n"


def write_metrics(
    path: Path,
    counters: RunCounters,
    shards: Sequence[ShardState],
    *,
    run_status: str,
    run_started_s: float,
    now_s: float,
    loaded_total: int | None = None,
    expected_total: int | None = None,
) -> None:
    """Replace ``path`` atomically with the metrics (mode 0644: node_exporter must read it).

    Raises ``OSError`` if the directory is not writable; callers decide whether that matters.
    """
    text = render_metrics(
        counters,
        shards,
        run_status=run_status,
        run_started_s=run_started_s,
        now_s=now_s,
        loaded_total=loaded_total,
        expected_total=expected_total,
    )
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
