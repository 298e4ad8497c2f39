"""Response bodies -> ``Page`` / error fields. Pure: bytes in, values out.

Fast path: one typed msgspec decode of the whole envelope, events as ``WireEvent`` (a loose
``RawEvent`` whose ``properties``/``session`` stay raw JSON bytes). If that decode fails on a
*type* (an element of ``data`` that is not an object, ``hasMore: "yes"``, invalid UTF-8 in one
event's string...), the slow path decodes the envelope loosely and every event on its own, so
one bad event never costs the page: it comes back as a ``MalformedEvent`` that transform
quarantines. Bodies that are not JSON, are truncated, or have no ``data`` array raise
``DecodeError`` (transient: the fetcher retries).

``has_more`` rule (so a missing field never silently ends a stream):

1. ``hasMore`` (in ``pagination``, else top level) when it is a bool;
2. else ``nextCursor`` when the key is present: a string -> True, null -> False;
3. else (neither key present) -> True iff the page has events. The caller then continues from
   the last event's position (``next_cursor`` is None: rebuild a cursor), and an empty page
   ends the stream. This costs one extra request at worst and never loses events.

Accepts the nested envelope every recorded response has
(``{data, pagination: {hasMore, nextCursor, ...}, meta: {total, ...}}``) and the flat one of
the docs (``{data, hasMore, nextCursor}``); ``pagination`` wins over top-level keys.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, cast

import msgspec
from msgspec import UNSET, UnsetType

from etl.errors import (
    DecodeError,  # re-exported: the decoder's failure
    TimestampError,
)
from etl.models import Page, Position
from etl.source import cursors
from etl.sources.events import MalformedEvent, RawEvent
from etl.timestamps import EPOCH, to_utc

__all__ = ["DecodeError", "decode_error_body", "decode_page"]

_ABSENT = msgspec.Raw(b"")


class WireEvent(RawEvent, omit_defaults=True, gc=False):
    """``RawEvent`` as decoded here. ``properties``/``session`` are ``msgspec.Raw`` always:
    ``Raw(b"")`` when the key is absent, ``Raw(b"null")`` for JSON null. (msgspec does not
    support ``Raw | None``: it then rejects every non-null value.) ``gc=False``: decoded JSON
    cannot form reference cycles, and untracked events keep GC scans off the hot path."""

    properties: msgspec.Raw = _ABSENT
    session: msgspec.Raw = _ABSENT


class _Pagination(msgspec.Struct):
    hasMore: bool | UnsetType = UNSET
    nextCursor: str | UnsetType | None = UNSET


class _Meta(msgspec.Struct):
    total: int | None = None


class _Envelope(msgspec.Struct):
    data: list[WireEvent] | UnsetType = UNSET
    pagination: _Pagination | None = None
    meta: _Meta | None = None
    hasMore: bool | UnsetType = UNSET
    nextCursor: str | UnsetType | None = UNSET


class _LooseEnvelope(msgspec.Struct):
    data: msgspec.Raw = _ABSENT
    pagination: Any = None
    meta: Any = None
    hasMore: Any = UNSET
    nextCursor: Any = UNSET


class _ErrorBody(msgspec.Struct):
    error: Any = None
    message: Any = None
    code: Any = None
    rateLimit: Any = None


_FAST = msgspec.json.Decoder(_Envelope)
_LOOSE = msgspec.json.Decoder(_LooseEnvelope)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_EVENT = msgspec.json.Decoder(WireEvent)
_ERROR = msgspec.json.Decoder(_ErrorBody)


def decode_page(body: bytes) -> Page:
    """Decode one list response (``/events`` or the feed). Raises ``DecodeError``."""
    try:
        env = _FAST.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _decode_page_slow(body)
    if env.data is UNSET:
        raise DecodeError(f"page without a data array ({len(body)} bytes)")
    events = cast("list[RawEvent]", env.data)  # list[WireEvent]; Page is read-only
    p = env.pagination
    has_more = p.hasMore if p is not None else UNSET
    cursor = p.nextCursor if p is not None else UNSET
    if has_more is UNSET:
        has_more = env.hasMore
    if cursor is UNSET:
        cursor = env.nextCursor
    total = env.meta.total if env.meta is not None else None
    return _page(events, has_more, cursor, total)


def _decode_page_slow(body: bytes) -> Page:
    """Loose envelope, each event on its own. msgspec cannot even skip over a lone surrogate
    escape (``"\\ud800"``), so when the loose decode fails too, stdlib ``json`` (which accepts
    them) splits the page; only a body stdlib ``json`` rejects as well is an error."""
    try:
        env = _LOOSE.decode(body)
        items: list[Any] | None = _RAW_LIST.decode(env.data) if env.data else None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        env, items = _decode_stdlib(body, exc)
    if items is None:
        raise DecodeError(f"page without a data array ({len(body)} bytes)")
    events: list[RawEvent] = []
    for item in items:
        try:
            events.append(_EVENT.decode(item))
        except (msgspec.DecodeError, UnicodeError) as exc:
            text = (
                item.encode("utf-8", "replace").decode()  # lone surrogates -> '?'
                if isinstance(item, str)
                else bytes(item).decode("utf-8", "replace")
            )
            events.append(MalformedEvent(raw=text, error=_event_error(item, exc)))
    pag = env.pagination if isinstance(env.pagination, dict) else {}
    has_more = _loose_bool(pag.get("hasMore", UNSET))
    if has_more is UNSET:
        has_more = _loose_bool(env.hasMore)
    cursor = _loose_cursor(pag.get("nextCursor", UNSET))
    if cursor is UNSET:
        cursor = _loose_cursor(env.nextCursor)
    meta = env.meta if isinstance(env.meta, dict) else {}
    total = meta.get("total")
    return _page(events, has_more, cursor, total if type(total) is int else None)


def _decode_stdlib(body: bytes, loose_error: Exception) -> tuple[_LooseEnvelope, list[Any] | None]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON page ({len(body)} bytes): {_short(loose_error)}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(f"page is not a JSON object ({len(body)} bytes)")
    env = _LooseEnvelope(
        pagination=doc.get("pagination"),
        meta=doc.get("meta"),
        hasMore=doc.get("hasMore", UNSET),
        nextCursor=doc.get("nextCursor", UNSET),
    )
    data = doc.get("data")
    if "data" in doc and not isinstance(data, list):
        raise DecodeError(f"page data is not an array ({len(body)} bytes)")
    items = None if data is None else [json.dumps(x, ensure_ascii=False) for x in data]
    return env, items


def _page(
    events: list[RawEvent],
    has_more: bool | UnsetType,
    cursor: str | UnsetType | None,
    total: int | None,
) -> Page:
    next_cursor = cursor if isinstance(cursor, str) else None
    if isinstance(has_more, bool):
        more = has_more
    elif cursor is not UNSET:
        more = next_cursor is not None
    else:
        more = bool(events)
    return Page(events=events, has_more=more, next_cursor=next_cursor, total=total)


def _loose_bool(value: object) -> bool | UnsetType:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return UNSET


def _loose_cursor(value: object) -> str | UnsetType | None:
    if value is None or isinstance(value, str):
        return value
    return UNSET


def _event_error(item: object, exc: Exception) -> str:
    """Our reason for a malformed event, in our words (the library's text only as detail)."""
    raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)  # type: ignore[call-overload]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "event is not valid UTF-8"
    if not raw.lstrip().startswith(b"{"):
        return "event is not a JSON object"
    return f"event does not match the expected fields: {_short(exc)}"


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 100 else text[:97] + "..."


def decode_error_body(body: bytes) -> tuple[str | None, str | None, float | None]:
    """``(code, message, retry_after_s)`` of an ``{error, message, code, rateLimit}`` body.

    Tolerant: anything else (an HTML page from a load balancer, truncated JSON, other shapes)
    gives ``None`` for what it lacks. ``retry_after_s`` is ``rateLimit.retryAfter``, else
    ``rateLimit.reset``; ``message`` falls back to ``error``.
    """
    try:
        err = _ERROR.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None, None, None
    code = err.code if isinstance(err.code, str) else None
    message = err.message if isinstance(err.message, str) else None
    if message is None and isinstance(err.error, str):
        message = err.error
    retry_after: float | None = None
    if isinstance(err.rateLimit, dict):
        for key in ("retryAfter", "reset"):
            value = err.rateLimit.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                retry_after = float(value)
                break
    return code, message, retry_after


_NEXT_CURSOR = re.compile(rb'"nextCursor"\s*:\s*"([A-Za-z0-9+/=_-]{8,})"')
_FIRST_ID = re.compile(rb'"id"\s*:\s*"([0-9a-fA-F-]{36})"')
_FIRST_TS = re.compile(rb'"timestamp"\s*:\s*(?:"([^"]{1,64})"|(\d{1,17}))')


def salvage_position(body: bytes) -> tuple[Position, str | None] | None:
    """Where a page that cannot be decoded ends, read from its raw bytes: the position in its
    ``nextCursor`` (and the cursor), else the first event's ``id`` and ``timestamp`` (for a
    one-event page, that event), else None. Only for stepping over a broken record."""
    m = _NEXT_CURSOR.search(body)
    if m is not None:
        cursor = m.group(1).decode("ascii")
        decoded = cursors.decode(cursor)
        if decoded is not None:
            return decoded[0], cursor
    m_id, m_ts = _FIRST_ID.search(body), _FIRST_TS.search(body)
    if m_id is None or m_ts is None:
        return None
    raw: object = m_ts.group(1).decode("utf-8", "replace") if m_ts.group(1) else int(m_ts.group(2))
    try:
        ts_ms = (to_utc(raw) - EPOCH) // dt.timedelta(milliseconds=1)
    except TimestampError:
        return None
    return Position(ts_ms, m_id.group(1).decode("ascii").lower()), None
