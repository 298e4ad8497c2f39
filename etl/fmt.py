"""Tiny text formatting shared by the display and the CLI (no rich, so commands start fast)."""

from __future__ import annotations

from collections.abc import Mapping


def human_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m40s``."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def log_line(
    text: str,
    *,
    fmt: str,
    now_s: float,
    level: str = "info",
    stamp: bool = True,
    fields: Mapping[str, object] | None = None,
) -> str:
    """One log line of ``etl ingest``: a JSON object (``--log-format json``) or text.

    JSON: ``{"ts": <unix s>, "time": "<ISO 8601 UTC>", "level": ..., "msg": ..., **fields}``.
    Text: ``<ISO 8601 UTC> <text>`` (``stamp=False`` leaves the time out, for a terminal).
    A text error starts with ``error:`` (in JSON, ``level`` says it).
    """
    import datetime as dt
    import json

    when = dt.datetime.fromtimestamp(now_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if fmt == "json":
        doc = {"ts": round(now_s, 3), "time": when, "level": level, "msg": text, **(fields or {})}
        return json.dumps(doc)
    if level == "error":
        text = f"error: {text}"
    return f"{when} {text}" if stamp else text
