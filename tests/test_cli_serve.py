"""`etl serve` as a user starts it: a real process, a real port, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DATASYNC_"))}
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


def _etl(*args: str) -> list[str]:
    return [sys.executable, "-m", "etl", *args]


def test_open_bind_without_client_key_is_refused(tmp_path: Path) -> None:
    """--host 0.0.0.0 with no ETL_SERVE_API_KEY: exit 2 with one line saying what to set."""
    done = subprocess.run(
        _etl("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "ETL_SERVE_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_then_stops_cleanly_on_sigterm(db_url: str, tmp_path: Path) -> None:
    """The server answers /health, says it serves loopback only without a key, and SIGTERM
    ends it with exit 0 and no traceback."""
    port = _free_port()
    proc = subprocess.Popen(
        _etl("serve", "--port", str(port), "--data-dir", str(tmp_path)),
        env=_env(DATABASE_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # printed once the socket listens (or the error)
        assert "listening" in first, first
        assert "loopback only" in first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
