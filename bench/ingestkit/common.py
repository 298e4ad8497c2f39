"""Constants of the ingest benchmark: paths, the demo key, the scenarios and the targets."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository
RESULTS_DIR = ROOT / "bench" / "results"
API_KEY = "ds_sandbox_demo_key_0000000000000000"
PAGE = 5000
LATENCY = ("real-limits", "shared-capacity", "slow-server", "fast-server", "scale-1")
SCENARIOS = (*LATENCY, "virtual", "unthrottled", "dlt", "memory", "status")
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s != "scale-1")  # scale-1: ~13 min

# issue 4 / issue 5 / issue 11 targets
TARGET_BUDGET_SHARE = 0.95
TARGET_429_SHARE = 0.005
TARGET_COPY_RATIO = 0.6
TARGET_DLT_RATIO = 8.0
TARGET_RSS_MB = 200.0
TARGET_RSS_FLAT = 0.15
TARGET_STATUS_MS = 350.0

# env vars that would change what a child does behind our back
_SCRUB_PREFIXES = ("DATABASE_URL", "DATASYNC_", "ETL_", "SANDBOX_", "DESTINATION__", "DLT_")
