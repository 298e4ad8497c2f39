"""`etl sandbox` as a process: start-up output, clean exit on SIGTERM, exit 2 on bad values."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "etl", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_cli_prints_url_and_demo_key_and_stops_on_sigterm() -> None:
    """`etl sandbox` prints its URL and the demo key, and SIGTERM stops it cleanly."""
    proc = _cli("--port", "0", env={"SANDBOX_EVENTS": "2000"})
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    key = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", url), err
    assert key == "API key (demo): ds_sandbox_demo_key_0000000000000000"
    assert "2,000 events" in err
    assert re.search(r"Databox Ingestion API: http://127\.0\.0\.1:\d+/databox", err)
    assert proc.returncode == 0


def test_cli_bad_value_exits_2() -> None:
    """A sandbox knob out of range is a configuration error: exit 2 with the reason."""
    proc = _cli("--p-502", "2")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "p_502 must be a probability" in err


def test_cli_bad_databox_value_exits_2() -> None:
    """A Databox knob out of range is a configuration error (exit 2), not a traceback."""
    proc = _cli("--databox-rate-limit", "0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "databox rate_limit must be > 0" in err
    assert "Traceback" not in err


def test_the_fault_knobs_reach_the_github_surface() -> None:
    """`etl sandbox --p-503 1` (or 504) breaks the GitHub issues pages too (the account endpoint
    stays up); `--invalid-events 1` serves every issue malformed: the demos and benchmarks
    of the GitHub spec get the same faults as DataSync's."""
    import json
    import urllib.error
    import urllib.request

    from etl.sandbox.github import DEMO_REPO, DEMO_TOKEN

    BROKEN_TIME = "last tuesday, around noon"  # what the sandbox serves as malformed

    def get(base: str, path: str) -> tuple[int, str]:
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    for knob, check in (("--p-503", 503), ("--p-504", 504), ("--invalid-events", 200)):
        proc = _cli("--port", "0", "--events", "1000", knob, "1")
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().removesuffix("/api/v1") + "/github"
        try:
            status, body = get(base, f"/repos/{DEMO_REPO}/issues?per_page=5")
            assert status == check
            assert get(base, "/user")[0] == 200
            if check == 200:  # malformed: no issue's updated_at can be read
                assert {i["updated_at"] for i in json.loads(body)} == {BROKEN_TIME}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
