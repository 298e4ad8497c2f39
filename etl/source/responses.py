"""Turn an HTTP response of the DataSync API into a Page or one of our errors."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from etl.errors import (
    AuthError,
    CursorExpired,
    PermanentSourceError,
    RateLimited,
    StreamTokenError,
    TransientSourceError,
)
from etl.models import Page
from etl.source.decode import decode_error_body, decode_page
from etl.source.http import Response

CURSOR_CODES = frozenset({"CURSOR_EXPIRED", "INVALID_CURSOR", "CURSOR_INVALID", "MALFORMED_CURSOR"})


def retry_after_s(headers: Mapping[str, str], body_hint: float | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), else the body's hint."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - time.time())
    return body_hint


def rate_limit_headers(headers: Mapping[str, str]) -> tuple[int, int, float] | None:
    """(limit, remaining, reset seconds) from ``X-RateLimit-*``, when all three are there."""
    try:
        return (
            int(headers["X-RateLimit-Limit"]),
            int(headers["X-RateLimit-Remaining"]),
            float(headers["X-RateLimit-Reset"]),
        )
    except (KeyError, ValueError):
        return None


def raise_for_status(resp: Response, what: str) -> None:
    """Raise the error a non-2xx response stands for; return on 2xx."""
    status = resp.status
    if 200 <= status < 300:
        return
    code, message, hint = decode_error_body(resp.body)
    detail = (
        f"{what}: HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {message}" if message else "")
    )
    if status == 429:
        raise RateLimited(detail, retry_after_s(resp.headers, hint))
    if status == 401:
        raise AuthError(
            f"{what}: the API key was rejected (HTTP 401{' ' + code if code else ''}); "
            "check --api-key / DATASYNC_API_KEY"
        )
    if status == 403:
        if code in ("INVALID_STREAM_TOKEN", "DASHBOARD_REQUIRED"):
            raise StreamTokenError(detail)
        raise AuthError(f"{detail}; check --api-key / DATASYNC_API_KEY")
    if status == 400 and code in CURSOR_CODES:
        raise CursorExpired(detail)
    if status >= 500 or status in (408, 425):
        raise TransientSourceError(detail)
    raise PermanentSourceError(detail)


def to_page(resp: Response, what: str, *, token_auth: bool = False) -> Page:
    """The page in ``resp``; with ``token_auth`` (the feed), any 401/403 is taken as the
    stream token's fault (get a new one), not the API key's."""
    if token_auth and resp.status in (401, 403):
        code, message, _ = decode_error_body(resp.body)
        raise StreamTokenError(f"{what}: HTTP {resp.status} {code or ''} {message or ''}".strip())
    raise_for_status(resp, what)
    return decode_page(resp.body)
