"""Knobs of the sandbox's Databox Ingestion API surface (one frozen, validated value)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from etl.errors import ConfigError

#: Accepted by the Databox surface when no key is configured.
DATABOX_DEMO_KEY = "dbx_sandbox_demo_key_000000000000"
#: Where the surface is mounted on the sandbox's server: ``<root>/databox/v1/...``.
DATABOX_PREFIX = "/databox"


@dataclass(frozen=True, slots=True)
class DataboxConfig:
    """``rate_limit``: requests per second per key (a token bucket holding one second's
    worth; the legacy push API documented 10/s). ``p_5xx``: share of requests answered 5xx
    before anything is stored; ``p_lost``: share of data requests stored, then answered 504
    (the response is lost). ``processing_s``: seconds an ingestion stays ``processing``.
    ``max_records``/``max_body_bytes``: 100 records and 1 MB per request."""

    api_keys: tuple[str, ...] = ()
    rate_limit: float = 10.0
    p_5xx: float = 0.0
    p_lost: float = 0.0
    fault_seed: int = 0
    processing_s: float = 0.0
    max_records: int = 100
    max_body_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        problems = []
        if not (self.rate_limit > 0 and math.isfinite(self.rate_limit)):
            problems.append("databox rate_limit must be > 0 requests/s")
        for name in ("p_5xx", "p_lost"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"databox {name} must be a probability in [0, 1]")
        if self.p_5xx + self.p_lost > 1:
            problems.append("databox p_5xx + p_lost must be <= 1")
        if not (self.processing_s >= 0 and math.isfinite(self.processing_s)):
            problems.append("databox processing_s must be >= 0 seconds")
        if self.max_records < 1 or self.max_body_bytes < 1:
            problems.append("databox max_records and max_body_bytes must be >= 1")
        for key in self.api_keys:
            if not key or any(ch.isspace() for ch in key):
                problems.append("databox api keys must be non-empty without whitespace")
        if problems:
            raise ConfigError("invalid sandbox configuration: " + "; ".join(problems))

    @property
    def keys(self) -> tuple[str, ...]:
        return self.api_keys or (DATABOX_DEMO_KEY,)
