"""Every knob of the sandbox's GitHub surface, as one frozen, validated value.

Durations are the real service's seconds; ``time_scale`` divides them (like the DataSync
sandbox), so an 8-hour token expires after 48 minutes at scale 10. Never reads the environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from etl.errors import ConfigError

#: Accepted as a personal access token when no token is configured.
DEMO_TOKEN = "ghp_sandboxdemotoken000000000000000000"
#: The sandbox's OAuth app (a GitHub App's client id looks like this).
DEMO_CLIENT_ID = "Iv1.sandbox00000000"
DEMO_CLIENT_SECRET = "sandbox_client_secret_0000000000000000000"
#: The one repository the sandbox serves.
DEMO_REPO = "sandbox-org/demo"
#: The newest issue's last update in the generated data: 2026-01-27T19:20:12Z.
NEWEST_UPDATE = 1_769_541_612

LimitStatus = Literal[403, 429]
_PROBABILITIES = ("p_500", "p_502", "p_503", "p_504", "p_truncate", "p_drop", "p_secondary")


@dataclass(frozen=True, slots=True)
class GithubConfig:
    # data
    issues: int = 500
    seed: int = 42
    span_days: float = 365.0
    pull_request_share: float = 0.2
    max_comments: int = 3  # comments per issue: 0..max_comments
    # pages
    default_per_page: int = 30
    max_per_page: int = 100
    # auth
    tokens: tuple[str, ...] = ()  # personal access tokens; empty: DEMO_TOKEN
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    access_token_ttl: float = 8 * 3600.0
    refresh_token_ttl: float = 15_897_600.0  # 184 days
    device_code_ttl: float = 900.0
    device_interval: int = 5
    # a person approves a device code this many seconds after it is issued (0: only by
    # visiting the verification page with ?user_code=)
    device_auto_approve: float = 0.0
    # rate limits
    primary_limit: int = 5000  # requests per hour per user
    primary_window: float = 3600.0
    primary_status: LimitStatus = 403
    secondary_per_minute: int = 900  # requests per sliding minute per user
    secondary_retry_after: float = 60.0
    secondary_status: LimitStatus = 403
    # faults (per data request, one RNG seeded with fault_seed)
    fault_seed: int = 0
    p_500: float = 0.0
    p_502: float = 0.0
    p_503: float = 0.0
    p_504: float = 0.0
    p_truncate: float = 0.0
    p_drop: float = 0.0
    p_secondary: float = 0.0  # a secondary-limit 403 out of the blue
    latency: float = 0.0  # seconds before each issues/comments page is answered
    malformed: float = 0.0  # share of issues/comments served with an unreadable updated_at
    time_scale: float = 1.0
    unlimited: bool = False

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid GitHub sandbox configuration: " + "; ".join(problems))

    @property
    def token_list(self) -> tuple[str, ...]:
        return self.tokens or (DEMO_TOKEN,)

    def scaled(self, seconds: float) -> float:
        return seconds / self.time_scale

    @property
    def faults_enabled(self) -> bool:
        return not self.unlimited and any(getattr(self, p) > 0 for p in _PROBABILITIES)

    def with_(self, **changes: object) -> GithubConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def _problems(c: GithubConfig) -> list[str]:
    """Every reason ``c`` is not a usable GitHub sandbox (empty: valid)."""
    return [*_size_problems(c), *_timing_problems(c), *_fault_problems(c)]


def _size_problems(c: GithubConfig) -> list[str]:
    out: list[str] = []
    if not 0 <= c.issues <= 1_000_000:
        out.append(f"issues must be between 0 and 1,000,000 (got {c.issues})")
    if not 0 <= c.max_comments <= 50:
        out.append("max_comments must be in [0, 50]")
    if not 1 <= c.default_per_page <= c.max_per_page:
        out.append("default_per_page must be in [1, max_per_page]")
    for name in ("primary_limit", "secondary_per_minute", "device_interval"):
        if getattr(c, name) < 1:
            out.append(f"{name} must be >= 1")
    return out


def _timing_problems(c: GithubConfig) -> list[str]:
    out: list[str] = []
    for name in (
        "span_days",
        "access_token_ttl",
        "refresh_token_ttl",
        "device_code_ttl",
        "primary_window",
        "secondary_retry_after",
        "time_scale",
    ):
        value = getattr(c, name)
        if not (value > 0 and math.isfinite(value)):
            out.append(f"{name} must be > 0")
    if not 0 <= c.latency <= 60:
        out.append("latency must be in [0, 60] seconds")
    if c.device_auto_approve < 0:
        out.append("device_auto_approve must be >= 0 seconds")
    return out


def _fault_problems(c: GithubConfig) -> list[str]:
    out: list[str] = []
    for name in ("primary_status", "secondary_status"):
        if getattr(c, name) not in (403, 429):
            out.append(f"{name} must be 403 or 429")
    for name in (*_PROBABILITIES, "pull_request_share", "malformed"):
        if not 0 <= getattr(c, name) <= 1:
            out.append(f"{name} must be a probability in [0, 1]")
    if c.p_500 + c.p_502 + c.p_503 + c.p_504 + c.p_truncate + c.p_drop > 1:
        out.append("p_500 + p_502 + p_503 + p_504 + p_truncate + p_drop must be <= 1")
    return out
