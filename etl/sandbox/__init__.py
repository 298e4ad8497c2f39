"""A faithful, fast sandbox of the DataSync Analytics API (``etl sandbox``).

Public API: ``SandboxConfig`` (every knob), ``build_app(config, clock=...)``,
``serve(config, host, port)``, ``Dataset`` (the deterministic events), ``FakeClock``,
``DEMO_API_KEY``. See /work/shared/datasync-api.md for the behaviour it reproduces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from etl.sandbox.clock import FakeClock, SandboxClock, SystemClock
from etl.sandbox.config import DEMO_API_KEY, SandboxConfig

if TYPE_CHECKING:
    from etl.sandbox.app import build_app, state_of
    from etl.sandbox.dataset import Dataset
    from etl.sandbox.server import serve

# The server parts (aiohttp) load on first use, so `etl --help` / `etl status` start fast.
_LAZY = {
    "build_app": "etl.sandbox.app",
    "state_of": "etl.sandbox.app",
    "Dataset": "etl.sandbox.dataset",
    "serve": "etl.sandbox.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)


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
