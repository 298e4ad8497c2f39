"""Plain-text tables for the read commands (no rich: these commands must start fast; rich
lives in etl.display)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from etl.read.jsonable import iso

if TYPE_CHECKING:
    from etl.read.anomalies import AnomalyReport
    from etl.read.events import EventsPage
    from etl.read.stats import SeriesReport


def cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    text = [[cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in text])


def _compact(value: object) -> str:
    import json

    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def events_table(page: EventsPage) -> str:
    if not page.events:
        return f"no events for user {page.user_id}"
    rows = [
        (
            e.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            e.type,
            e.name or "",
            _compact(e.properties),
            _compact(e.session),
            e.id,
        )
        for e in page.events
    ]
    out = table(("time (UTC)", "type", "name", "properties", "session", "id"), rows)
    if page.next_before:
        out += f"\nmore: --before {page.next_before}"
    return out


def series_text(report: SeriesReport) -> str:
    data = report.data
    out: list[str] = []
    if not data.buckets:
        out.append("no events in the range")
    elif not report.stats or report.forecasts:
        fmt = "%Y-%m-%d %H:00" if data.bucket == "hour" else "%Y-%m-%d"
        headers = [f"{data.bucket} (UTC)"] + [s.name for s in data.series]
        cells: list[list[object]] = [
            [b.strftime(fmt)] + [s.values[i] for s in data.series]
            for i, b in enumerate(data.buckets)
        ]
        out.append(table(headers, cells))
    if report.stats:
        rows: list[list[object]] = [
            [
                s.name,
                s.buckets,
                s.count,
                s.min,
                s.max,
                round(s.mean, 1),
                s.p50,
                s.p95,
                round(s.trend_per_bucket, 3),
                None if s.trend_pct is None else round(s.trend_pct, 1),
            ]
            for s in report.stats
        ]
        out.append(
            table(
                (
                    "series",
                    "buckets",
                    "count",
                    "min",
                    "max",
                    "mean",
                    "p50",
                    "p95",
                    f"trend/{data.bucket}",
                    "trend %",
                ),
                rows,
            )
        )
    for f in report.forecasts:
        fmt = "%Y-%m-%d %H:00" if data.bucket == "hour" else "%Y-%m-%d"
        out.append(
            f"forecast {f.name} (Holt-Winters, period {f.period}, a={f.alpha:.3f} "
            f"b={f.beta:.3f} g={f.gamma:.3f}; 95 % interval)"
        )
        out.append(
            table(
                (f"{data.bucket} (UTC)", "forecast", "low", "high"),
                [
                    (p.bucket.strftime(fmt), round(p.value, 1), round(p.low, 1), round(p.high, 1))
                    for p in f.points
                ],
            )
        )
    out.append(f"{len(data.series)} series shown, {data.series_held} held")
    return "\n".join(out)


def series_csv(report: SeriesReport) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("bucket", "series", "kind", "value", "low", "high"))
    for s in report.data.series:
        for b, v in zip(report.data.buckets, s.values, strict=True):
            w.writerow((iso(b), s.name, "count", v, "", ""))
    for f in report.forecasts:
        for p in f.points:
            w.writerow(
                (
                    iso(p.bucket),
                    f.name,
                    "forecast",
                    f"{p.value:.4f}",
                    f"{p.low:.4f}",
                    f"{p.high:.4f}",
                )
            )
    return buf.getvalue()


def anomalies_text(r: AnomalyReport) -> str:
    out = []
    if r.window_end is None:
        return "no events yet: nothing to judge"
    s = r.settings
    out.append(
        f"run {r.run_id}: {r.series_checked} series, {r.bucket} buckets, detection "
        f"{s.detection_days} d before {cell(r.window_end)} UTC, training {s.training_days} d, "
        f"sensitivity {s.sensitivity:g}"
    )
    if r.anomalies:
        rows = [
            (
                a.series,
                a.bucket,
                a.value,
                round(a.expected, 1),
                round(a.low, 1),
                round(a.high, 1),
                round(a.zscore, 2),
                a.direction,
                a.seasonality,
            )
            for a in r.anomalies
        ]
        out.append(
            table(
                (
                    "series",
                    "bucket",
                    "value",
                    "expected",
                    "low",
                    "high",
                    "z",
                    "direction",
                    "seasonality",
                ),
                rows,
            )
        )
    if r.breaches:
        rows2 = [(b.day.strftime("%Y-%m-%d"), b.rule, b.value, b.min, b.max) for b in r.breaches]
        out.append(table(("day", "rule", "value", "min", "max"), rows2))
    if not r.found:
        out.append("no anomalies, no threshold breaches")
    else:
        out.append(f"{len(r.anomalies)} anomalies, {len(r.breaches)} threshold breaches")
    return "\n".join(out)
