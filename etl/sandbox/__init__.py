"""A faithful, fast sandbox of the DataSync Analytics API (``etl sandbox``).

Public API: ``SandboxConfig`` (every knob), ``build_app(config, clock=...)``,
``serve(config, host, port)``, ``Dataset`` (the deterministic events), ``FakeClock``,
``DEMO_API_KEY``. See /work/shared/datasync-api.md for the behaviour it reproduces.
"""

from etl.sandbox.app import build_app, state_of
from etl.sandbox.clock import FakeClock, SandboxClock, SystemClock
from etl.sandbox.config import DEMO_API_KEY, SandboxConfig
from etl.sandbox.dataset import Dataset
from etl.sandbox.server import serve

__all__ = [
    "DEMO_API_KEY",
    "Dataset",
    "FakeClock",
    "SandboxClock",
    "SandboxConfig",
    "SystemClock",
    "build_app",
    "serve",
    "state_of",
]
