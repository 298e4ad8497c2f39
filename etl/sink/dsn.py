"""DSN helpers: never let a database password reach a message, a log line or a traceback."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

_MASK = "***"
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def dsn_password(dsn: str) -> str | None:
    """The password in ``dsn`` (URL userinfo, ``?password=`` or ``password=`` key/value)."""
    try:
        parts = urlsplit(dsn)
        if parts.scheme:
            if parts.password:
                return unquote(parts.password)
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                if key.lower() == "password" and value:
                    return value
            return None
    except ValueError:
        pass
    m = _KV_PASSWORD.search(dsn)
    if m:
        return m.group(2).strip("'") or None
    return None


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``; safe to print.

    Handles ``postgresql://user:pw@host/db``, ``?password=pw`` and libpq ``key=value`` strings.
    Anything unparseable is reduced to ``<unparseable DSN>`` rather than echoed.
    """
    try:
        parts = urlsplit(dsn)
        if parts.scheme:
            netloc = parts.netloc
            if "@" in netloc:
                userinfo, _, hostport = netloc.rpartition("@")
                user, sep, _pw = userinfo.partition(":")
                netloc = f"{user}:{_MASK}@{hostport}" if sep and _pw else f"{user}@{hostport}"
            query = parts.query
            if query:
                pairs = [
                    (k, _MASK if k.lower() == "password" else v)
                    for k, v in parse_qsl(query, keep_blank_values=True)
                ]
                query = urlencode(pairs, safe="/*", quote_via=quote)
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable DSN>"
    if "=" in dsn:
        return _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, dsn)
    return "<unparseable DSN>"


def scrub(text: str, dsn: str) -> str:
    """``text`` with the DSN and its password (raw and URL-encoded) masked."""
    if dsn and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    password = dsn_password(dsn)
    if password:
        for form in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(form, _MASK)
    return text
