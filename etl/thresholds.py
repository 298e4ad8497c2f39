"""Threshold rules for `etl anomalies`: from a JSON file or a benchmark service URL.

Any failure (file missing or unreadable, service down, timeout, non-200, a body that is not
JSON or not rules) raises ``ThresholdsError`` (exit 13) with one clear line: the command never
goes on as if there were no thresholds, which would silently report no breaches.
The service answers ``GET <url>`` with the same JSON as the file (the sandbox serves one at
``/benchmarks/thresholds``). Uses the standard library only (fast to import).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from etl.anomaly import Rule, parse_rules
from etl.errors import ThresholdsError

TIMEOUT_S = 5.0
MAX_BYTES = 1 << 20


def from_file(path: Path) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdsError(f"cannot read thresholds file {path}: {exc.strerror}") from exc
    return _parse(text, f"thresholds file {path}")


def _get(url: str, timeout_s: float) -> str:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        body: bytes = resp.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError("answer larger than 1 MiB")
    return body.decode("utf-8")


async def from_url(url: str, timeout_s: float = TIMEOUT_S) -> list[Rule]:
    where = f"benchmark service {url}"
    if not url.startswith(("http://", "https://")):
        raise ThresholdsError(f"--thresholds-url must be http(s)://…, got {url!r}")
    try:
        text = await asyncio.to_thread(_get, url, timeout_s)
    except urllib.error.HTTPError as exc:
        raise ThresholdsError(f"{where} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ThresholdsError(f"{where} is unreachable: {reason}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ThresholdsError(f"{where} answered garbage: {exc}") from exc
    return _parse(text, where)


def _parse(text: str, where: str) -> list[Rule]:
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise ThresholdsError(f"{where} answered garbage: not JSON") from exc
    try:
        return parse_rules(doc)
    except ValueError as exc:
        raise ThresholdsError(f"{where} answered garbage: {exc}") from exc
