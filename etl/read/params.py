"""Validated inputs of the read queries (shared by the CLI and any other front end).

Every parser raises ``ConfigError`` (exit 2) with a one-line message naming the option.
"""

from __future__ import annotations

import datetime as dt
import uuid

from etl.errors import ConfigError


def parse_time(text: str, option: str) -> dt.datetime:
    """ISO 8601 (``2026-01-27T19:19:13Z``, an offset, or a date ``2026-01-27``); a time
    without an offset is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"{option} must be an ISO 8601 time like 2026-01-27T19:00:00Z, got {text!r}"
        ) from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_uuid(text: str, option: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError as exc:
        raise ConfigError(f"{option} must be a UUID, got {text!r}") from exc


def parse_before(text: str) -> tuple[dt.datetime, str | None]:
    """``--before``: a time, or the ``TIME/ID`` position a previous page printed."""
    when, _, event_id = text.partition("/")
    return (
        parse_time(when, "--before"),
        parse_uuid(event_id, "--before") if event_id else None,
    )


def check_range(since: dt.datetime | None, until: dt.datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ConfigError("--since must be before --until")
