"""Any timestamp the API may send -> an aware UTC ``datetime``, or ``TimestampError``.

Fast path first, by type:

* ``int`` / ``float`` epoch (and all-digit / decimal numeric strings): the unit is chosen by
  magnitude ``|n|``:

  ==========================  ======  =====================================================
  ``|n| < 1e11``              s       1e11 s is the year 5138; 1e11 ms would be 1973-03-03
  ``1e11 <= |n| < 1e14``      ms      the API's native unit (1769541612369)
  ``1e14 <= |n| < 1e17``      µs
  ``1e17 <= |n| < 1e20``      ns      truncated to µs (datetime's resolution)
  ==========================  ======  =====================================================

  Negative values (before 1970) are rejected. Ms values before 1973-03-03 would be read as
  seconds (year > 2100) and rejected: an accepted ambiguity, no real event is that old.
  All-digit strings are always epoch values, never ISO basic dates ("20260127").
* ISO-8601 strings: ``datetime.fromisoformat`` (3.11 accepts ``Z``, ``±hh:mm``/``±hhmm``,
  a space separator, 1-9 fraction digits (truncated to µs), basic format). No zone = UTC.
  A lowercase ``z``/``t`` is upper-cased and retried.
* RFC 2822 (``Thu, 25 May 2023 01:48:56 GMT``): ``email.utils.parsedate_to_datetime``.
* Anything else: ``dateutil.parser.parse``, but only if the string fully determines the
  instant (a string missing its year or day, which dateutil would fill in from "today", and
  an unknown zone name are rejected).

Rejected with ``TimestampError``: bools, None and other types, NaN/inf, empty strings, and any
instant outside [1970-01-01, 2101-01-01) UTC: such a value is corrupted, not a real event.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import warnings

from dateutil import parser as _dateutil

from etl.errors import TimestampError

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MIN_UTC = EPOCH
MAX_UTC = dt.datetime(2101, 1, 1, tzinfo=UTC)  # exclusive
MAX_EPOCH_MS = 4_133_980_800_000  # MAX_UTC in epoch ms

_S_BELOW = 100_000_000_000  # 1e11
_MS_BELOW = 100_000_000_000_000  # 1e14
_US_BELOW = 100_000_000_000_000_000  # 1e17
_NS_BELOW = 100_000_000_000_000_000_000  # 1e20

_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)\Z")
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_DEFAULT_A = dt.datetime(2001, 2, 3)  # two defaults that differ in every date field
_DEFAULT_B = dt.datetime(2002, 4, 6)
_ONE_MS = dt.timedelta(milliseconds=1)


def to_utc(value: object) -> dt.datetime:
    """``value`` as an aware UTC datetime; raises ``TimestampError`` with a short reason."""
    kind = type(value)
    if kind is int:
        return _from_epoch_int(value)  # type: ignore[arg-type]
    if kind is str:
        s: str = value  # type: ignore[assignment]
        if s.isdigit() and s.isascii():
            return _from_epoch_int(int(s))
        try:
            d = dt.datetime.fromisoformat(s)
        except ValueError:
            return _from_str_slow(s)
        tz = d.tzinfo
        if tz is not UTC:  # 'Z' and '+00:00' give the UTC singleton
            d = _naive_utc(d) if tz is None else _as_utc(d)
        if MIN_UTC <= d < MAX_UTC:
            return d
        raise TimestampError(f"out of range: {d.isoformat()}")
    if kind is float:
        return _from_epoch_float(value)  # type: ignore[arg-type]
    if isinstance(value, dt.datetime):
        return _check(_naive_utc(value) if value.tzinfo is None else _as_utc(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return _from_epoch_int(int(value))
    raise TimestampError(f"unsupported type {type(value).__name__}")


def epoch_ms(value: dt.datetime) -> int:
    """Whole epoch milliseconds of an aware datetime (floored, exact integer arithmetic)."""
    return (value - EPOCH) // _ONE_MS


def timestamp_raw(value: object) -> str:
    """The value as received, as text: strings as is, ints as decimal, floats by ``repr``."""
    if type(value) is str:
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


def _naive_utc(d: dt.datetime) -> dt.datetime:
    """A naive datetime taken as UTC (3x faster than ``d.replace(tzinfo=UTC)`` on 3.11)."""
    return dt.datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, UTC)


def _as_utc(d: dt.datetime) -> dt.datetime:
    try:
        return d.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59-05:00
        raise TimestampError(f"out of range: {d.isoformat()}") from exc


def _check(d: dt.datetime) -> dt.datetime:
    if MIN_UTC <= d < MAX_UTC:
        return d
    raise TimestampError(f"out of range: {d.isoformat()}")


def _from_epoch_int(n: int) -> dt.datetime:
    if n < 0:
        raise TimestampError(f"out of range: negative epoch {n}")
    if _S_BELOW <= n < _MS_BELOW:  # the common case; n / 1000 is exact to the ms here
        d = dt.datetime.fromtimestamp(n / 1000, UTC)
    elif n < _S_BELOW:
        d = dt.datetime.fromtimestamp(n, UTC)
    elif n < _US_BELOW:
        d = EPOCH + dt.timedelta(microseconds=n)
    elif n < _NS_BELOW:
        d = EPOCH + dt.timedelta(microseconds=n // 1000)
    else:
        raise TimestampError(f"out of range: epoch {n}")
    return _check(d)


def _from_epoch_float(f: float) -> dt.datetime:
    if not math.isfinite(f):
        raise TimestampError(f"not a finite number: {f}")
    if f >= _NS_BELOW:
        raise TimestampError(f"out of range: epoch {f:g}")
    if f.is_integer():
        return _from_epoch_int(int(f))
    if f < 0:
        raise TimestampError(f"out of range: negative epoch {f}")
    if f < _S_BELOW:
        d = EPOCH + dt.timedelta(seconds=f)
    elif f < _MS_BELOW:
        d = EPOCH + dt.timedelta(milliseconds=f)
    elif f < _US_BELOW:
        d = EPOCH + dt.timedelta(microseconds=f)
    else:
        d = EPOCH + dt.timedelta(microseconds=f / 1000)
    return _check(d)


def _from_str_slow(raw: str) -> dt.datetime:
    s = raw.strip()
    if not s:
        raise TimestampError("empty string")
    if _NUMERIC.match(s):
        if s.lstrip("+-").isdigit():
            return _from_epoch_int(int(s))
        return _from_epoch_float(float(s))
    upper = s.upper()
    if upper != raw and not s[:1].isalpha():
        try:  # lowercase 'z' / 't', or surrounding blanks
            d = dt.datetime.fromisoformat(upper)
        except ValueError:
            pass
        else:
            return _check(_naive_utc(d) if d.tzinfo is None else _as_utc(d))
    try:  # RFC 2822; '-0000' (zone unknown) comes back naive and is taken as UTC
        d = email.utils.parsedate_to_datetime(s)
    except (ValueError, TypeError, IndexError):
        pass
    else:
        return _check(_naive_utc(d) if d.tzinfo is None else _as_utc(d))
    return _from_dateutil(s)


def _from_dateutil(s: str) -> dt.datetime:
    """Last resort. Parsed twice with different defaults: any difference means a field was
    missing and filled in, so the instant is not determined by the string. A 4-digit year
    is required (dateutil reads '1 2 3' as a date)."""
    if _YEAR.search(s) is None:
        raise TimestampError("no known format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _dateutil.UnknownTimezoneWarning)
            a = _dateutil.parse(s, default=_DEFAULT_A)
            b = _dateutil.parse(s, default=_DEFAULT_B)
    except _dateutil.UnknownTimezoneWarning as exc:
        raise TimestampError("unknown time zone") from exc
    except (ValueError, OverflowError, TypeError) as exc:
        raise TimestampError("no known format") from exc
    if a != b:
        raise TimestampError("incomplete date or time")
    return _check(_naive_utc(a) if a.tzinfo is None else _as_utc(a))
