"""Lines the CLI prints itself: errors and summaries, in the format the logs use."""

from __future__ import annotations

import os
import time

from etl.fmt import log_line


def log_format() -> str:
    """``--log-format`` before the options are parsed (a .env error): ETL_LOG_FORMAT."""
    return "json" if os.environ.get("ETL_LOG_FORMAT", "").strip().lower() == "json" else "text"


def error_line(text: str, *, fmt: str | None = None, stamp: bool = False) -> str:
    """``error: <text>`` (timestamped when ``stamp``: `etl ingest`'s log lines off a
    terminal), or a JSON object with ``"level": "error"``."""
    return log_line(text, fmt=fmt or log_format(), now_s=time.time(), level="error", stamp=stamp)
