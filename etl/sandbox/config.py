"""Every knob of the sandbox, as one frozen, validated value. Never reads the environment."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from etl.errors import ConfigError
from etl.sandbox.databox.config import DataboxConfig

#: Accepted when no key is configured; printed by ``etl sandbox`` at start-up.
DEMO_API_KEY = "ds_sandbox_demo_key_0000000000000000"

#: The newest event of the real dataset: 2026-01-27T19:20:12.369Z.
REAL_NEWEST_TS_MS = 1769541612369

TimestampFormats = Literal["recorded", "mixed", "ms"]
TimestampRule = Literal["page", "event"]
QueryAuthPool = Literal["shared", "separate"]

_PROBABILITIES = (
    "p_500",
    "p_502",
    "p_503",
    "p_504",
    "p_truncate",
    "p_drop",
    "p_slow",
    "p_missing_fields",
    "invalid_events",
    "poison_events",
)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """All behaviour of the sandbox. Times are in seconds of the sandbox clock.

    ``time_scale`` divides every window, TTL and latency (the *reported* seconds too), so a
    run under the real limits fits in minutes. ``unlimited`` switches off every rate limit,
    throttle, cache, latency and fault (pure-throughput benchmarks).
    """

    # dataset
    events: int = 3_000_000
    seed: int = 42
    newest_ts_ms: int = REAL_NEWEST_TS_MS
    span_days: float = 30.0
    tie_fraction: float = 0.001  # share of neighbours with an equal timestamp
    live_rate: float = 0.0  # events/s appended at the head (ts = now); <= 1000
    # auth
    api_keys: tuple[str, ...] = ()
    # pages
    default_limit: int = 100
    max_limit: int = 5000
    # rate limits: fixed window per key per group, opened by the first request
    rate_limit: int = 10  # /events group, header auth
    query_auth_limit: int = 5  # /events group, ?api_key= auth
    query_auth_pool: QueryAuthPool = "shared"
    sessions_limit: int = 40
    metrics_limit: int = 30
    window: float = 60.0
    cache_ttl: float = 30.0
    cache_hit_consumes: bool = True
    # cursors and tokens
    cursor_ttl: float = 117.0  # events: exp = now + ttl, cursorExpiresIn = ttl - 1
    sessions_cursor_ttl: float = 120.0
    token_ttl: float = 300.0
    # feed
    feed_throttle: int = 200  # requests per feed_window, sliding, per key
    feed_window: float = 300.0
    feed_retry_after: bool = False
    feed_bounds_inclusive: bool = True
    # 418 "I'm a teapot" for a feed ``since``/``until`` outside the data range (reported
    # once, trigger unknown; off by default)
    feed_teapot: bool = False
    # the feed goes down for good after this many feed requests (503 from then on; 0: never)
    feed_down_after: int = 0
    # realism
    latency_per_page: float = 0.0  # seconds for a 5000-event page (real: about 3.5)
    # pages in flight share this many events/s (spec §6: ~5-6k at most); 0: no sharing,
    # every page takes latency_per_page. See etl/sandbox/capacity.py
    capacity: float = 5500.0
    capacity_exponent: float = 0.35  # capacity grows as n ** exponent with n pages in flight
    time_scale: float = 1.0
    timestamp_formats: TimestampFormats = "recorded"
    timestamp_rule: TimestampRule = "page"
    # faults (probabilities per data request; deterministic given fault_seed)
    fault_seed: int = 0
    p_500: float = 0.0
    p_502: float = 0.0
    p_503: float = 0.0
    p_504: float = 0.0
    p_truncate: float = 0.0
    p_drop: float = 0.0
    p_slow: float = 0.0
    slow_seconds: float = 5.0
    p_missing_fields: float = 0.0
    invalid_events: float = 0.0  # share of events served invalid (bad timestamp / no id)
    # GET /benchmarks/thresholds (etl.sandbox.benchmarks): none, down, garbage, bad_rules, slow
    thresholds_fault: str = "none"
    # share of events always served as broken JSON: any page holding one cannot be decoded
    poison_events: float = 0.0
    # submissions
    max_submissions: int = 5
    unlimited: bool = False
    # the Databox Ingestion API surface under /databox (etl.sandbox.databox)
    databox: DataboxConfig = field(default_factory=DataboxConfig)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid sandbox configuration: " + "; ".join(problems))

    # -- derived values -------------------------------------------------------------
    @property
    def keys(self) -> tuple[str, ...]:
        return self.api_keys or (DEMO_API_KEY,)

    def scaled(self, seconds: float) -> float:
        """A duration of the real service, in sandbox-clock seconds."""
        return seconds / self.time_scale

    @property
    def limits_enabled(self) -> bool:
        return not self.unlimited

    @property
    def faults_enabled(self) -> bool:
        return not self.unlimited and any(
            getattr(self, name) > 0
            for name in _PROBABILITIES
            if name not in ("invalid_events", "poison_events")
        )

    def with_(self, **changes: object) -> SandboxConfig:
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _problems(c: SandboxConfig) -> list[str]:
    """Every reason ``c`` is not a usable sandbox, as one line each (empty: valid)."""
    return [
        *_dataset_problems(c),
        *_limit_problems(c),
        *_duration_problems(c),
        *_choice_problems(c),
        *_fault_problems(c),
    ]


def _dataset_problems(c: SandboxConfig) -> list[str]:
    out: list[str] = []
    if not 1 <= c.events <= 100_000_000:
        out.append(f"events must be between 1 and 100,000,000 (got {c.events})")
    if not 0 < c.newest_ts_ms < 10**14:
        out.append("newest_ts_ms must be a positive epoch-ms value")
    if not (c.span_days > 0 and math.isfinite(c.span_days)):
        out.append("span_days must be > 0")
    if not 0 <= c.tie_fraction < 0.5:
        out.append("tie_fraction must be in [0, 0.5)")
    if not 0 <= c.live_rate <= 1000:
        out.append("live_rate must be in [0, 1000] events/s")
    return out


def _limit_problems(c: SandboxConfig) -> list[str]:
    out = [
        f"api key {key[:12]!r}... must be non-empty without whitespace"
        for key in c.api_keys
        if not key or any(ch.isspace() for ch in key) or len(key) > 200
    ]
    if not 1 <= c.default_limit <= c.max_limit:
        out.append("default_limit must be in [1, max_limit]")
    for name in ("rate_limit", "query_auth_limit", "sessions_limit", "metrics_limit"):
        if getattr(c, name) < 1:
            out.append(f"{name} must be >= 1")
    if c.feed_throttle < 1:
        out.append("feed_throttle must be >= 1")
    if c.max_submissions < 0:
        out.append("max_submissions must be >= 0")
    if c.feed_down_after < 0:
        out.append("feed_down_after must be >= 0")
    return out


def _duration_problems(c: SandboxConfig) -> list[str]:
    positive = ("window", "feed_window", "cursor_ttl", "sessions_cursor_ttl", "token_ttl")
    out = [
        f"{name} must be > 0 seconds"
        for name in positive
        if not (getattr(c, name) > 0 and math.isfinite(getattr(c, name)))
    ]
    out += [
        f"{name} must be >= 0 seconds"
        for name in ("cache_ttl", "latency_per_page", "slow_seconds", "capacity")
        if not (getattr(c, name) >= 0 and math.isfinite(getattr(c, name)))
    ]
    if not 0 < c.capacity_exponent <= 1:
        out.append("capacity_exponent must be in (0, 1]")
    if not (c.time_scale > 0 and math.isfinite(c.time_scale)):
        out.append("time_scale must be > 0")
    return out


def _choice_problems(c: SandboxConfig) -> list[str]:
    out: list[str] = []
    if c.timestamp_formats not in ("recorded", "mixed", "ms"):
        out.append("timestamp_formats must be recorded, mixed or ms")
    if c.thresholds_fault not in ("none", "down", "garbage", "bad_rules", "slow"):
        out.append("thresholds_fault must be none, down, garbage, bad_rules or slow")
    if c.timestamp_rule not in ("page", "event"):
        out.append("timestamp_rule must be page or event")
    if c.query_auth_pool not in ("shared", "separate"):
        out.append("query_auth_pool must be shared or separate")
    return out


def _fault_problems(c: SandboxConfig) -> list[str]:
    out = [
        f"{name} must be a probability in [0, 1] (got {getattr(c, name)})"
        for name in _PROBABILITIES
        if not 0 <= getattr(c, name) <= 1
    ]
    exclusive = c.p_500 + c.p_502 + c.p_503 + c.p_504 + c.p_truncate + c.p_drop
    if exclusive > 1:
        out.append("p_500 + p_502 + p_503 + p_504 + p_truncate + p_drop must be <= 1")
    return out
