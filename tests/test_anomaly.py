"""Z-score volume anomalies (Elementary's way) and threshold rules, on known series."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from etl.anomaly import Rule, Settings, check_rules, detect, parse_rules, safe_ratio

H = dt.timedelta(hours=1)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def daily_wave(days: int) -> tuple[list[dt.datetime], list[int]]:
    """Hourly counts with a strong daily shape (100..300) and a small deterministic wobble."""
    buckets = [START + i * H for i in range(days * 24)]
    values = [
        int(200 + 100 * math.sin(2 * math.pi * (i % 24) / 24) + (i * 7919) % 11 - 5)
        for i in range(len(buckets))
    ]
    return buckets, values


def test_spike_in_detection_window_is_found_with_hour_of_day_seasonality() -> None:
    """16 days of history: each detection bucket is compared with the 14 training buckets at
    its hour of day; a doubled hour is a spike with value, expected value, range and z."""
    buckets, values = daily_wave(16)
    i = len(values) - 10
    values[i] *= 2
    found = detect("click", buckets, values, H)
    assert [(a.bucket, a.direction, a.seasonality) for a in found] == [
        (buckets[i], "spike", "hour_of_day")
    ]
    a = found[0]
    assert a.value == values[i] and a.training_points == 14
    assert a.low < a.expected < a.high < a.value and a.zscore > 3


def test_drop_and_the_detection_window_stays_out_of_training() -> None:
    """A whole detection window at zero: every bucket is a drop, because the zeros are not
    part of the training they are compared with."""
    buckets, values = daily_wave(16)
    for i in range(len(values) - 48, len(values)):
        values[i] = 0
    found = detect("all", buckets, values, H)
    assert len(found) == 48 and {a.direction for a in found} == {"drop"}
    assert all(a.low >= 0 for a in found)  # a volume range never goes below 0


def test_seasonality_follows_the_history_available() -> None:
    """With 5 days of training, hours of the day have too few points (< 7): the buckets are
    compared with all training buckets (no seasonality); with under 7 points, nothing."""
    buckets, values = daily_wave(7)
    values[-1] = 5000
    found = detect("x", buckets, values, H)
    assert found and found[-1].seasonality == "none" and found[-1].training_points == 120
    few = detect("x", buckets[-50:], values[-50:], H, Settings(min_training_points=7))
    assert few == []  # 2 training hours only


def test_flat_history_has_no_zscore() -> None:
    """A constant training window (stddev 0) gives z = 0, as Elementary: no anomaly."""
    buckets = [START + i * H for i in range(16 * 24)]
    values = [10] * len(buckets)
    values[-1] = 11
    assert detect("x", buckets, values, H) == []


def test_rules_per_day_several_at_once_and_none() -> None:
    """A day may break several rules; a day breaking none gives nothing; ratios are safe and
    rounded to 4 decimals."""
    day1, day2, day3 = START, START + 24 * H, START + 48 * H
    days = {
        day1: {"page_view": 1000, "click": 100, "purchase": 1, "error": 300},
        day2: {"page_view": 1000, "click": 700, "purchase": 140, "error": 10},
        day3: {"page_view": 0, "click": 0, "purchase": 0},
    }
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "ctr",
                    "metric": "ratio",
                    "numerator": "click",
                    "denominator": "page_view",
                    "min": 0.5,
                },
                {
                    "name": "conv",
                    "metric": "ratio",
                    "numerator": "purchase",
                    "denominator": "click",
                    "min": 0.1,
                },
                {
                    "name": "errors",
                    "metric": "ratio",
                    "numerator": "error",
                    "denominator": "*",
                    "max": 0.08,
                },
            ]
        }
    )
    got = [(b.day, b.rule, b.value) for b in check_rules(days, rules)]
    assert got == [(day1, "ctr", 0.1), (day1, "conv", 0.01), (day1, "errors", 0.2141)]  # 300 / 1401
    assert safe_ratio(1, 0) is None and safe_ratio(2, 3) == 0.6667


def test_bad_rules_are_refused() -> None:
    """A rule document that is not one is a ValueError naming the problem."""
    for doc, word in (
        ({"rules": "x"}, "list of rules"),
        ([{"metric": "ratio", "numerator": "click"}], "numerator and denominator"),
        ([{"metric": "count", "type": "click"}], "needs min or max"),
        ([{"metric": "count", "min": "1"}], "min must be a number"),
    ):
        with pytest.raises(ValueError, match=word):
            parse_rules(doc)
    assert parse_rules([{"type": "error", "max": 5}]) == [
        Rule("count:error", "count", "error", None, None, 5.0)
    ]
