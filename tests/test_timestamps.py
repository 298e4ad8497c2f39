"""etl.timestamps: every accepted format -> the same aware UTC instant; bad values raise."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from etl.errors import TimestampError
from etl.timestamps import epoch_ms, timestamp_raw, to_utc

UTC = dt.UTC
# 2026-01-27T19:20:12.369Z, the newest event of the real dataset
T = dt.datetime(2026, 1, 27, 19, 20, 12, 369000, tzinfo=UTC)
T_S = dt.datetime(2026, 1, 27, 19, 20, 12, tzinfo=UTC)

VALID: list[tuple[object, dt.datetime]] = [
    # --- as the API sends them (spec §3.2)
    (1769541612369, T),  # epoch ms number (/events i % 3 == 0, the feed)
    ("2026-01-27T19:20:12.369Z", T),  # ISO, ms, Z
    # --- epoch numbers: s / ms / µs / ns by magnitude
    (1769541612, T_S),
    (1769541612369000, T),
    (1769541612369000000, T),
    (1769541612.369, T),  # float seconds
    (1769541612369.0, T),  # float ms (integral)
    (1769541612369.5, T + dt.timedelta(microseconds=500)),
    (0, dt.datetime(1970, 1, 1, tzinfo=UTC)),  # lower bound, inclusive
    (100_000_000_000, dt.datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # smallest ms value
    # --- numeric strings
    ("1769541612369", T),
    ("1769541612", T_S),
    ("1769541612369000", T),
    ("1769541612.369", T),
    (" 1769541612369 ", T),
    ("+1769541612369", T),
    # --- ISO-8601 variants
    ("2026-01-27T19:20:12Z", T_S),
    ("2026-01-27T19:20:12.369z", T),  # lowercase z
    ("2026-01-27t19:20:12.369z", T),
    ("2026-01-27T19:20:12.369+00:00", T),
    ("2026-01-27T19:20:12.369+0000", T),
    ("2026-01-27T19:20:12.369-00:00", T),
    ("2026-01-28T00:50:12.369+05:30", T),
    ("2026-01-27T11:20:12.369-08:00", T),
    ("2026-01-27T11:20:12.369-0800", T),
    ("2026-01-27T19:20:12.369", T),  # no zone = UTC
    ("2026-01-27 19:20:12.369", T),  # space separator
    ("2026-01-27 19:20:12.369Z", T),
    ("2026-01-27T19:20:12,369Z", T),  # comma fraction
    ("20260127T192012.369Z", T),  # basic format
    ("2026-01-27T19:20:12.3Z", T_S + dt.timedelta(microseconds=300000)),
    ("2026-01-27T19:20:12.36Z", T_S + dt.timedelta(microseconds=360000)),
    ("2026-01-27T19:20:12.3690Z", T),
    ("2026-01-27T19:20:12.36900Z", T),
    ("2026-01-27T19:20:12.369000Z", T),
    ("2026-01-27T19:20:12.3690001Z", T),  # 7-9 digits truncated to µs
    ("2026-01-27T19:20:12.36900012Z", T),
    ("2026-01-27T19:20:12.369000123Z", T),
    ("2026-01-27T19:20Z", dt.datetime(2026, 1, 27, 19, 20, tzinfo=UTC)),
    ("2026-01-27", dt.datetime(2026, 1, 27, tzinfo=UTC)),
    ("  2026-01-27T19:20:12.369Z\n", T),
    # --- RFC 2822
    ("Tue, 27 Jan 2026 19:20:12 GMT", T_S),
    ("Tue, 27 Jan 2026 19:20:12 +0000", T_S),
    ("Tue, 27 Jan 2026 19:20:12 -0000", T_S),  # zone unknown -> UTC
    ("Tue, 27 Jan 2026 14:20:12 -0500", T_S),
    ("27 Jan 2026 19:20:12 GMT", T_S),
    ("Tue, 27 Jan 2026 19:20:12 UT", T_S),
    # --- dateutil fallback
    ("2026-01-27 19:20:12 UTC", T_S),
    ("2026/01/27 19:20:12", T_S),
    ("January 27, 2026 19:20:12 +00:00", T_S),
    # --- datetime objects
    (T, T),
    (T.replace(tzinfo=None), T),
    (T.astimezone(dt.timezone(dt.timedelta(hours=-3))), T),
]

INVALID: list[tuple[object, str]] = [
    (True, "unsupported type"),
    (False, "unsupported type"),
    (None, "unsupported type"),
    ([1769541612369], "unsupported type"),
    ({"ts": 1}, "unsupported type"),
    (b"1769541612369", "unsupported type"),
    (math.nan, "not a finite"),
    (math.inf, "not a finite"),
    (-math.inf, "not a finite"),
    ("", "empty"),
    ("   ", "empty"),
    ("abc", "no known format"),
    ("null", "no known format"),
    ("not a date 2026", "no known format"),
    ("1 2 3", "no known format"),  # dateutil alone would say 2003-01-02
    ("2026-13-01T00:00:00Z", "no known format"),
    ("2026-01-27T25:00:00Z", "no known format"),
    ("2026-01-27T19:20:12.369zz", "no known format"),
    ("May 2026", "incomplete"),  # no day: dateutil would fill in "today"
    ("19:20:12", "no known format"),
    ("2026-01-27 19:20:12 EST", "unknown time zone"),
    ("1e12", "no known format"),
    (-1, "out of range"),
    (-1769541612369, "out of range"),
    ("-1769541612369", "out of range"),
    (-0.5, "out of range"),
    (99_999_999_999, "out of range"),  # seconds, year 5138
    (10**20, "out of range"),
    (1e300, "out of range"),
    ("1969-12-31T23:59:59Z", "out of range"),
    ("2101-01-01T00:00:00Z", "out of range"),
    ("0001-01-01T00:00:00Z", "out of range"),
    ("9999-12-31T23:59:59-05:00", "out of range"),
    ("Tue, 27 Jan 2200 19:20:12 GMT", "out of range"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID, ids=[repr(v) for v, _ in VALID])
def test_valid_value_is_normalised_to_utc(raw: object, expected: dt.datetime) -> None:
    """Each accepted format gives the expected instant, aware and in UTC."""
    got = to_utc(raw)
    assert got == expected
    assert got.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(("raw", "reason"), INVALID, ids=[repr(v) for v, _ in INVALID])
def test_invalid_value_raises_timestamp_error(raw: object, reason: str) -> None:
    """A value no format expresses (or an absurd instant) raises with a short reason."""
    with pytest.raises(TimestampError, match=reason) as info:
        to_utc(raw)
    assert len(str(info.value)) < 120


def test_timestamp_error_is_a_value_error() -> None:
    """Callers may catch it as ValueError too."""
    with pytest.raises(ValueError):
        to_utc("abc")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T, 1769541612369),
        (T + dt.timedelta(microseconds=999), 1769541612369),  # floored
        (dt.datetime(1970, 1, 1, tzinfo=UTC), 0),
    ],
)
def test_epoch_ms_is_exact_and_floored(value: dt.datetime, expected: int) -> None:
    """epoch_ms uses integer arithmetic (no float rounding)."""
    assert epoch_ms(value) == expected


def test_epoch_ms_of_iso_equals_the_number() -> None:
    """The same instant sent as ISO or as an epoch-ms number maps to the same ms."""
    assert epoch_ms(to_utc("2026-01-27T19:20:12.369Z")) == epoch_ms(to_utc(1769541612369))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1769541612369, "1769541612369"),
        ("2026-01-27T19:20:12.369Z", "2026-01-27T19:20:12.369Z"),
        (" 17 ", " 17 "),
        (1769541612.5, "1769541612.5"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_timestamp_raw_keeps_the_value_as_text(value: object, expected: str) -> None:
    """timestamp_raw renders what was received, untouched for strings."""
    assert timestamp_raw(value) == expected
