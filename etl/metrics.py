"""Prometheus text exposition format for node_exporter's textfile collector (``--metrics-file``).

``write_metrics`` renders the figures of the current run with prometheus_client and replaces
the file atomically (its ``write_to_textfile``: a temp file in the same directory, then a
rename), so the collector never reads half a file. Only `etl ingest` imports this module:
prometheus_client costs `etl status` nothing. Point node_exporter's
``--collector.textfile.directory`` at the file's directory; the name must end in ``.prom``.

Counters (``*_total``) are per run: they restart at 0 with each run, which Prometheus'
``rate()``/``increase()`` treat as a counter reset. ``etl_last_run_*`` are written only once a
run has ended (``run_status`` other than ``running``); during a run ``etl_run_in_progress`` is 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from etl.models import FINAL_STATUSES, RunCounters, ShardState

SHARD_STATUSES = ("pending", "running", "done")


class _Figures:
    """A prometheus_client collector of one moment of a run (the textfile is a snapshot)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def _families(
    counters: RunCounters,
    shards: Sequence[ShardState],
    *,
    run_status: str,
    run_started_s: float,
    now_s: float,
    loaded_total: int | None,
    expected_total: int | None,
) -> list[Metric]:
    c = counters
    out: list[Metric] = [
        # CounterMetricFamily adds the ``_total`` suffix to the sample's name
        CounterMetricFamily(
            "etl_events_received", "Events received from the API in this run.", c.received
        ),
        CounterMetricFamily("etl_events_inserted", "New events inserted in this run.", c.inserted),
        CounterMetricFamily(
            "etl_events_duplicate", "Events already present (skipped).", c.duplicates
        ),
        CounterMetricFamily("etl_quarantined", "Events quarantined as invalid.", c.quarantined),
        CounterMetricFamily("etl_requests", "HTTP requests sent to the API.", c.requests),
        CounterMetricFamily("etl_rate_limited", "HTTP 429 responses received.", c.rate_limited),
        CounterMetricFamily(
            "etl_retries", "Requests retried after a transient failure.", c.retries
        ),
        CounterMetricFamily("etl_cursor_resets", "Expired cursors re-anchored.", c.cursor_resets),
        CounterMetricFamily("etl_pages", "Pages fetched.", c.pages),
    ]
    by_status = GaugeMetricFamily("etl_shards", "Shards of the sync by status.", labels=["status"])
    for status in SHARD_STATUSES:
        by_status.add_metric([status], sum(1 for x in shards if x.status == status))
    out.append(by_status)
    if loaded_total is not None:
        out.append(
            GaugeMetricFamily(
                "etl_events_loaded", "Events in the table (progress counters).", loaded_total
            )
        )
    if expected_total:
        out.append(
            GaugeMetricFamily(
                "etl_events_expected", "Events the API reports in total.", expected_total
            )
        )
    if "missing" in c.extra:  # judged once every shard is done
        out.append(
            GaugeMetricFamily(
                "etl_events_missing",
                "Events the source states that the table lacks after a finished sync "
                "(0: complete).",
                c.extra["missing"],
            )
        )
    running = run_status not in FINAL_STATUSES
    out.append(GaugeMetricFamily("etl_run_in_progress", "1 while a run is going on.", int(running)))
    out.append(
        GaugeMetricFamily(
            "etl_run_duration_seconds",
            "Duration of the current or last run.",
            round(max(0.0, now_s - run_started_s), 3),
        )
    )
    if not running:
        out.append(
            GaugeMetricFamily(
                "etl_last_run_success",
                "1 if the last run completed the sync, else 0.",
                int(run_status == "succeeded"),
            )
        )
        last = GaugeMetricFamily(
            "etl_last_run_status", "Outcome of the last run (1 for its status).", labels=["status"]
        )
        for status in FINAL_STATUSES:
            last.add_metric([status], int(status == run_status))
        out.append(last)
        out.append(
            GaugeMetricFamily(
                "etl_last_run_timestamp_seconds", "Unix time the last run ended.", now_s
            )
        )
    return out


def _registry(
    counters: RunCounters,
    shards: Sequence[ShardState],
    *,
    run_status: str,
    run_started_s: float,
    now_s: float,
    loaded_total: int | None,
    expected_total: int | None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _Figures(
            _families(
                counters,
                shards,
                run_status=run_status,
                run_started_s=run_started_s,
                now_s=now_s,
                loaded_total=loaded_total,
                expected_total=expected_total,
            )
        )
    )
    return registry


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
    registry = _registry(
        counters,
        shards,
        run_status=run_status,
        run_started_s=run_started_s,
        now_s=now_s,
        loaded_total=loaded_total,
        expected_total=expected_total,
    )
    return generate_latest(registry).decode()


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
    """Replace ``path`` atomically with the metrics (prometheus_client's
    ``write_to_textfile``: a temp file beside it, then a rename), mode 0644 so node_exporter
    can read it whatever the umask.

    Raises ``OSError`` if the directory is not writable; callers decide whether that matters.
    """
    registry = _registry(
        counters,
        shards,
        run_status=run_status,
        run_started_s=run_started_s,
        now_s=now_s,
        loaded_total=loaded_total,
        expected_total=expected_total,
    )
    write_to_textfile(str(path), registry)
    os.chmod(path, 0o644)
