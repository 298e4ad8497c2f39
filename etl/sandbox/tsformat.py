"""How ``/events`` writes a timestamp: the recorded mix, or every format a real API may send.

Each formatter returns JSON text for the *true* instant ``ts`` (epoch ms). Lossless formats
keep the millisecond; ``epoch_s`` and ``rfc2822`` drop the sub-second part (LOSSY).

- ``recorded`` (default): epoch-ms number when the index % 3 == 0, else ISO-8601 ``...Z``
  with milliseconds; the index is the event's position in the page (``timestamp_rule=page``,
  as recorded) or a per-event property (``timestamp_rule=event``).
- ``mixed``: cycles through all of FORMATS by the same index.
- ``ms``: every timestamp an epoch-ms number (what the feed always sends).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from etl.sandbox.config import SandboxConfig

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_OFFSETS = (330, -480, 60, -210, 545, 0, -300, 120)  # minutes east of UTC
_minute_cache: dict[int, str] = {}


def _minute_prefix(minute: int) -> str:
    """``YYYY-MM-DDTHH:MM:`` of an epoch minute (cached: a page covers few minutes)."""
    pre = _minute_cache.get(minute)
    if pre is None:
        if len(_minute_cache) > 200_000:
            _minute_cache.clear()
        pre = (_EPOCH + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
        _minute_cache[minute] = pre
    return pre


def iso_z(ts: int) -> str:
    minute, ms = divmod(ts, 60_000)
    sec, milli = divmod(ms, 1000)
    return f'"{_minute_prefix(minute)}{sec:02d}.{milli:03d}Z"'


def _dt(ts: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ts)


def epoch_ms(ts: int) -> str:
    return str(ts)


def epoch_s(ts: int) -> str:
    return str(ts // 1000)


def iso_offset(ts: int) -> str:
    off = _OFFSETS[ts % len(_OFFSETS)]
    local = _dt(ts).astimezone(dt.timezone(dt.timedelta(minutes=off)))
    return '"' + local.isoformat(timespec="milliseconds") + '"'


def iso_naive(ts: int) -> str:
    return '"' + _dt(ts).replace(tzinfo=None).isoformat(timespec="milliseconds") + '"'


def space_separated(ts: int) -> str:
    return '"' + _dt(ts).replace(tzinfo=None).isoformat(" ", timespec="milliseconds") + '"'


def rfc2822(ts: int) -> str:
    return '"' + _dt(ts).strftime("%a, %d %b %Y %H:%M:%S +0000") + '"'


def ms_string(ts: int) -> str:
    return f'"{ts}"'


def iso_micro(ts: int) -> str:
    return '"' + _dt(ts).isoformat(timespec="microseconds").replace("+00:00", "Z") + '"'


FORMATS: dict[str, Callable[[int], str]] = {
    "epoch_ms": epoch_ms,
    "iso_z": iso_z,
    "epoch_s": epoch_s,
    "iso_offset": iso_offset,
    "iso_naive": iso_naive,
    "space": space_separated,
    "rfc2822": rfc2822,
    "ms_string": ms_string,
    "iso_micro": iso_micro,
}
LOSSY = frozenset({"epoch_s", "rfc2822"})
_MIXED = tuple(FORMATS.values())

Stamp = Callable[[int, int], str]
"""``stamp(index, ts)`` -> JSON text; ``index`` is the page position or the event number."""


def _recorded(index: int, ts: int) -> str:
    return str(ts) if index % 3 == 0 else iso_z(ts)


def _mixed(index: int, ts: int) -> str:
    return _MIXED[index % len(_MIXED)](ts)


def _ms(index: int, ts: int) -> str:
    return str(ts)


def stamp_for(config: SandboxConfig, *, feed: bool = False) -> Stamp:
    if feed or config.timestamp_formats == "ms":
        return _ms
    return _mixed if config.timestamp_formats == "mixed" else _recorded


def format_name(config: SandboxConfig, index: int) -> str:
    """Which format ``stamp_for(config)`` uses for ``index`` (for tests and docs)."""
    if config.timestamp_formats == "ms":
        return "epoch_ms"
    if config.timestamp_formats == "mixed":
        return tuple(FORMATS)[index % len(FORMATS)]
    return "epoch_ms" if index % 3 == 0 else "iso_z"
