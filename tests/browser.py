"""Headless Chromium (Debian's ``chromium``) for page tests: the DOM after scripts ran, and a
screenshot. CI installs chromium (.ci/run); elsewhere a missing browser skips with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # tests run as root here
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--virtual-time-budget=4000",  # let the page's scripts run (fetch /status) before the dump
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run should have installed it")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _run(args: list[str], profile: Path) -> str:
    done = subprocess.run(
        [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM as serialized after load and its scripts."""
    return _run(["--dump-dom", url], profile)


def screenshot(url: str, out: Path, profile: Path, size: str = "800,1500") -> Path:
    _run([f"--screenshot={out}", f"--window-size={size}", url], profile)
    assert out.exists() and out.stat().st_size > 1000, "no screenshot written"
    return out
