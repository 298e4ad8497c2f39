"""Volume anomalies (Elementary-style z-scores) and threshold rules. Pure, no I/O.

Z-scores, as Elementary's ``volume_anomalies`` test computes them, with its defaults:
the *detection* window is the last ``detection_days`` (2) of buckets; each of its buckets is
compared with the *training* window, the ``training_days`` (14) before the detection window
(the detection window is never part of its own training: Elementary's users asked for this in
elementary#1491/#1560/#1589). Seasonality is chosen by the history available: when every
hour of the day has at least ``min_training_points`` (7) training buckets, a bucket is compared
only with training buckets at the same hour of day (a week of hourly history is enough), else
with all of them; for day buckets the same with the day of the week. With fewer than
``min_training_points`` training values a bucket is not judged. expected = the training
mean, z = (value - mean) / sample stddev (0 when the stddev is 0, as Elementary), anomalous
when |z| > ``sensitivity`` (3); range = mean +- sensitivity x stddev (low clipped at 0).

Threshold rules are checked per UTC day: a ``count`` rule on one type (or all), a ``ratio``
rule numerator/denominator (types, or "*" for all events). Division is safe: a zero
denominator gives no ratio (the rule is not judged that day, never an infinity or a crash);
ratios are rounded to 4 decimals before comparing. A day may break several rules; a day that
breaks none gives nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from etl.settings import AnomalySettings

Settings = AnomalySettings  # the detection knobs; their defaults are written in etl.settings

ALL = "*"


@dataclass(frozen=True, slots=True)
class Anomaly:
    series: str
    bucket: dt.datetime
    value: int
    expected: float
    low: float
    high: float
    zscore: float
    direction: Literal["spike", "drop"]
    seasonality: Literal["hour_of_day", "day_of_week", "none"]
    training_points: int


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: Literal["count", "ratio"]
    numerator: str  # a type, or "*"
    denominator: str | None = None  # ratio only
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Breach:
    day: dt.datetime
    rule: str
    metric: str
    value: float
    min: float | None
    max: float | None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def detect(
    name: str,
    buckets: Sequence[dt.datetime],
    values: Sequence[int],
    width: dt.timedelta,
    settings: Settings = Settings(),
) -> list[Anomaly]:
    """Anomalies of one series whose buckets end at ``buckets[-1] + width``."""
    if not buckets:
        return []
    end = buckets[-1] + width
    det_start = end - dt.timedelta(days=settings.detection_days)
    train_start = det_start - dt.timedelta(days=settings.training_days)
    hourly = width == dt.timedelta(hours=1)

    def season(t: dt.datetime) -> int:
        return t.hour if hourly else t.weekday()

    training: dict[int, list[float]] = {}
    flat: list[float] = []
    for t, v in zip(buckets, values, strict=True):
        if train_start <= t < det_start:
            training.setdefault(season(t), []).append(float(v))
            flat.append(float(v))
    groups = 24 if hourly else 7
    seasonal = len(training) == groups and all(
        len(v) >= settings.min_training_points for v in training.values()
    )
    kind: Literal["hour_of_day", "day_of_week", "none"] = (
        ("hour_of_day" if hourly else "day_of_week") if seasonal else "none"
    )
    out = []
    for t, v in zip(buckets, values, strict=True):
        if t < det_start:
            continue
        train = training.get(season(t), []) if seasonal else flat
        if len(train) < settings.min_training_points:
            continue
        mean, std = _mean_std(train)
        z = 0.0 if std == 0 else (v - mean) / std
        if abs(z) <= settings.sensitivity:
            continue
        half = settings.sensitivity * std
        out.append(
            Anomaly(
                name,
                t,
                v,
                round(mean, 4),
                round(max(0.0, mean - half), 4),
                round(mean + half, 4),
                round(z, 4),
                "spike" if z > 0 else "drop",
                kind,
                len(train),
            )
        )
    return out


def parse_rules(doc: Any) -> list[Rule]:
    """Rules from their JSON form (a list, or ``{"rules": [...]}``); ``ValueError`` naming
    the problem when the document is not one."""
    items = doc.get("rules") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError('expected a list of rules or {"rules": [...]}')
    rules = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"rule {i} is not an object")
        metric = item.get("metric", "count")
        if metric not in ("count", "ratio"):
            raise ValueError(f"rule {i}: metric must be count or ratio")
        num = item.get("numerator", item.get("type", ALL))
        den = item.get("denominator")
        if not isinstance(num, str) or (metric == "ratio" and not isinstance(den, str)):
            raise ValueError(f"rule {i}: a ratio needs numerator and denominator (types or '*')")
        bounds = []
        for key in ("min", "max"):
            b = item.get(key)
            if b is not None and (
                isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b)
            ):
                raise ValueError(f"rule {i}: {key} must be a number")
            bounds.append(None if b is None else float(b))
        if bounds == [None, None]:
            raise ValueError(f"rule {i}: needs min or max")
        name = item.get("name") or f"{metric}:{num}" + (f"/{den}" if den else "")
        rules.append(Rule(str(name), metric, num, den if metric == "ratio" else None, *bounds))
    return rules


def safe_ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator rounded to 4 decimals; None when the denominator is 0."""
    if denominator == 0:
        return None
    return round(numerator / denominator, 4)


def _total(counts: Mapping[str, int], name: str) -> int:
    return sum(counts.values()) if name == ALL else counts.get(name, 0)


def check_rules(
    days: Mapping[dt.datetime, Mapping[str, int]], rules: Sequence[Rule]
) -> list[Breach]:
    """``days``: per UTC day, events per type. Every (day, rule) broken, in day order."""
    out = []
    for day in sorted(days):
        counts = days[day]
        for rule in rules:
            value: float | None
            if rule.metric == "count":
                value = float(_total(counts, rule.numerator))
            else:
                value = safe_ratio(
                    _total(counts, rule.numerator), _total(counts, rule.denominator or ALL)
                )
            if value is None:
                continue
            if (rule.min is not None and value < rule.min) or (
                rule.max is not None and value > rule.max
            ):
                out.append(Breach(day, rule.name, rule.metric, value, rule.min, rule.max))
    return out
