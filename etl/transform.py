"""DataSync's page transform: decoded events -> rows of ``events`` or ``Quarantined``.

Pure, no I/O. ``EventsTransform`` is the ``events`` stream's ``PageTransform`` hook
(``etl.source.datasync.events_stream``).

Per event, in this order:

1. ``id`` must be a UUID string (canonical lowercase; other spellings ``uuid.UUID`` accepts,
   e.g. uppercase, are normalised) and ``timestamp`` must parse (``timestamps.to_utc``),
   else the event is quarantined. ``ts_ms`` is the epoch ms of the normalised instant.
2. Shard bounds: an event is kept only if ``lower_ts < ts_ms <= upper_ts`` (None =
   unbounded). Others are dropped and counted in ``out_of_range``: another shard owns them.
   As pages run newest first, an unparseable timestamp that follows an event below
   ``lower_ts`` belongs to the next shard too, and is counted, not quarantined.
3. A repeated id within the page: the first occurrence wins, repeats are counted in
   ``duplicates`` (the sink's ``ON CONFLICT DO NOTHING`` would also absorb them).
4. ``type`` a non-empty string; ``name`` a string or null; ``sessionId``/``userId`` UUIDs or
   null; ``properties`` a JSON object, where absent or null means ``{}`` (the column is NOT
   NULL, and "no properties" is a valid event); ``session`` a JSON object or null. Text that
   PostgreSQL would refuse (NUL characters, ``\\u0000`` or unpaired surrogates in JSON,
   invalid UTF-8) is quarantined here, so one event can never fail a whole batch.
5. ``required`` (the stream's declaration, ``RequiredFields``): an in-range event lacking
   any of them (key absent, or JSON null) is *incomplete*: it goes to ``incomplete``, not to
   ``records``, with a reason naming the fields. The caller re-reads the page for a complete
   copy (``etl.batching.fill_incomplete``) and quarantines what stays incomplete: a stripped row is
   never loaded as if it were the event.

``last`` is the position (ts_ms, id) of the last event in page order with a valid id and
timestamp (kept, quarantined, duplicate or out of range alike: all of them are handled), so a
cursor rebuilt from it never skips an event. ``min_ts`` is the smallest ts_ms of those events.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from etl.errors import TimestampError
from etl.models import Position, Quarantined, Record, TransformResult
from etl.sources.events import MalformedEvent, RawEvent
from etl.timestamps import EPOCH, MAX_EPOCH_MS, timestamp_raw, to_utc

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ONE_MS = dt.timedelta(milliseconds=1)
_MS_LO = 100_000_000_000  # an int in [_MS_LO, MAX_EPOCH_MS) is a valid epoch-ms timestamp
_ID_CHARS = re.compile(r"[0-9a-f\n-]*\Z")
_NO_BOUND_LO, _NO_BOUND_HI = -(2**63), 2**63
_RAW_FIELDS = frozenset({"properties", "session"})  # msgspec.Raw on the wire
_NULL_RAW = msgspec.Raw(b"null")
INCOMPLETE_PREFIX = "missing required fields: "


def canonical_uuid(value: object) -> str | None:
    """``value`` as a lowercase canonical UUID string, or None if it is not one."""
    if type(value) is not str:
        return None
    if _UUID.match(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def event_position(event: RawEvent) -> Position | None:
    """The (ts_ms, id) of one event, or None if its id or timestamp is invalid."""
    eid = canonical_uuid(event.id)
    if eid is None:
        return None
    try:
        return Position((to_utc(event.timestamp) - EPOCH) // _ONE_MS, eid)
    except TimestampError:
        return None


class RequiredFields:
    """The fields a stream declares every event must carry (wire names, e.g. ``userId``).

    ``id`` and ``timestamp`` are always required (checked before this); a field counts as
    missing when its key is absent or its value is JSON null."""

    __slots__ = ("_raw", "_scalar", "fields")

    def __init__(self, fields: tuple[str, ...]) -> None:
        unknown = set(fields) - set(RawEvent.__struct_fields__)
        if unknown:
            raise ValueError(f"not event fields: {', '.join(sorted(unknown))}")
        self.fields = tuple(f for f in fields if f not in ("id", "timestamp"))
        self._raw = tuple(f for f in self.fields if f in _RAW_FIELDS)
        scalar = [f for f in self.fields if f not in _RAW_FIELDS]
        # one C call per event in the common case (every field there); the first field is
        # named twice so that attrgetter always returns a tuple
        self._scalar = operator.attrgetter(*scalar, *scalar[:1]) if scalar else None

    @property
    def scalar_getter(self) -> Callable[[RawEvent], tuple[Any, ...]] | None:
        """A tuple of the required non-JSON fields (None in it: one is missing)."""
        return self._scalar

    def requires(self, name: str) -> bool:
        return name in self._raw or name in self.fields

    def missing(self, ev: RawEvent) -> list[str]:
        out = []
        for f in self.fields:
            value = getattr(ev, f)
            if value is None or (f in _RAW_FIELDS and (not value or value == _NULL_RAW)):
                out.append(f)
        return out


def incomplete_reason(missing: list[str]) -> str:
    return f"{INCOMPLETE_PREFIX}{', '.join(missing)}"


def transform_page(
    events: list[RawEvent],
    *,
    shard_id: str | None = None,
    lower_ts: int | None = None,
    upper_ts: int | None = None,
    required: RequiredFields | None = None,
    max_text: int = 1 << 60,
) -> TransformResult:
    """Validate and convert one page. ``shard_id`` is only carried into the result.
    ``max_text``: an event whose name, properties and session together are longer is
    quarantined (a record over the sane cap is refused, never loaded).

    Two passes: ``_placed`` keeps the events with a valid id and time inside the shard
    (steps 1-2 of the module docstring), ``_convert`` turns those into rows (4-5); then
    repeats and incomplete events are settled (3)."""
    out = TransformResult(shard_id=shard_id)
    lo = _NO_BOUND_LO if lower_ts is None else lower_ts
    hi = _NO_BOUND_HI if upper_ts is None else upper_ts
    placed = _placed(events, lo, hi, out)
    _convert(placed, out, required if required is not None and required.fields else None, max_text)
    records = out.records
    if len({r[0] for r in records}) != len(records):
        out.records, out.duplicates = _first_of_each_id(records)
    if out.incomplete:  # a complete copy on the same page wins
        loaded = {r[0] for r in out.records}
        out.incomplete = [q for q in out.incomplete if q.event_id not in loaded]
    return out


class EventsTransform:
    """The ``events`` stream's ``PageTransform``: ``transform_page`` with the stream's
    required fields."""

    __slots__ = ("required",)

    def __init__(self, required: tuple[str, ...]) -> None:
        self.required = RequiredFields(required)

    def __call__(
        self,
        records: list[Any],
        *,
        shard_id: str | None,
        lower_ts: int | None,
        upper_ts: int | None,
        max_text: int,
    ) -> TransformResult:
        return transform_page(
            records,
            shard_id=shard_id,
            lower_ts=lower_ts,
            upper_ts=upper_ts,
            required=self.required,
            max_text=max_text,
        )


# One event with a valid id and timestamp inside the shard: (event, id, instant, raw time).
_Placed = tuple[RawEvent, str, dt.datetime, str]


def _placed(events: list[RawEvent], lo: int, hi: int, out: TransformResult) -> list[_Placed]:
    """Steps 1-2: the events whose id and timestamp are valid and whose time is in
    ``(lo, hi]``; sets ``out.last``/``out.min_ts``, counts ``out_of_range`` and quarantines
    bad ids and timestamps (past an event below ``lo``, those are the next shard's)."""
    kept: list[_Placed] = []
    keep = kept.append
    ids_ok = _all_canonical([ev.id for ev in events])
    from_ts, utc, ms_lo, ms_hi = dt.datetime.fromtimestamp, dt.UTC, _MS_LO, MAX_EPOCH_MS
    last: tuple[int, str] | None = None
    min_ts = _NO_BOUND_HI
    below = False  # an event below lower_ts was seen: the rest of the page is below too
    when: tuple[dt.datetime, int, str] | None
    for ev in events:
        eid = ev.id if ids_ok else _odd_id(ev, lo, hi, below, out)
        if eid is None:
            continue
        ts = ev.timestamp
        if type(ts) is int and ms_lo <= ts < ms_hi:  # epoch ms, the common case: inlined
            when = (from_ts(ts / 1000, utc), ts, str(ts))
        else:
            when = _odd_timestamp(ev, eid, below, out)
            if when is None:
                continue
        occurred, ts_ms, ts_raw = when
        last = (ts_ms, eid)
        if ts_ms < min_ts:
            min_ts = ts_ms
        if ts_ms <= lo:
            below = True
            out.out_of_range += 1
        elif ts_ms > hi:
            out.out_of_range += 1
        else:
            keep((ev, eid, occurred, ts_raw))
    if last is not None:
        out.last = Position(*last)
        out.min_ts = min_ts
    return kept


def _odd_id(ev: RawEvent, lo: int, hi: int, below: bool, out: TransformResult) -> str | None:
    """The canonical id of an event on a page where not every id is canonical; None (the
    event quarantined, or counted out of range when it is another shard's) if it has none."""
    eid = ev.id
    if type(eid) is str and _UUID.match(eid):
        return eid
    eid = canonical_uuid(eid)
    if eid is None:
        if below or _outside(ev.timestamp, lo, hi):  # another shard's to judge
            out.out_of_range += 1
        else:
            out.quarantined.append(_reject(ev, _id_problem(ev), None))
    return eid


def _odd_timestamp(
    ev: RawEvent, eid: str, below: bool, out: TransformResult
) -> tuple[dt.datetime, int, str] | None:
    """(instant, epoch ms, raw text) of a timestamp that is not plain epoch ms; None (the
    event quarantined, or counted out of range past the shard's bottom) if it cannot parse."""
    ts = ev.timestamp
    try:
        occurred = to_utc(ts)
    except TimestampError as exc:
        if below:
            out.out_of_range += 1
        else:
            out.quarantined.append(_reject(ev, _ts_problem(ts, exc), eid))
        return None
    return occurred, (occurred - EPOCH) // _ONE_MS, ts if type(ts) is str else timestamp_raw(ts)


def _convert(
    placed: list[_Placed], out: TransformResult, req: RequiredFields | None, max_text: int
) -> None:
    """Steps 4-5: each placed event becomes a row of ``out.records``, or goes to
    ``out.quarantined`` (invalid) or ``out.incomplete`` (lacking a required field)."""
    lacks = req.scalar_getter if req is not None else None
    # properties/session are checked where they are looked at anyway
    need = (req.requires("properties"), req.requires("session")) if req is not None else None
    append = out.records.append
    refs: set[str] = set()  # session/user ids already validated on this page
    for ev, eid, occurred, ts_raw in placed:
        if lacks is not None and None in lacks(ev):
            out.incomplete.append(_incomplete(ev, req, eid))
            continue
        texts = _texts(ev, refs)
        if isinstance(texts, str):
            out.quarantined.append(_reject(ev, texts, eid))
            continue
        docs = _documents(ev, need)
        if isinstance(docs, tuple):
            typ, name, sid, uid = texts
            props, session = docs
            if len(props) + len(session or "") + len(name or "") > max_text:
                out.quarantined.append(_reject_large(ev, eid, max_text))
                continue
            append((eid, sid, uid, typ, name, occurred, props, session, ts_raw))
        elif docs is None:
            out.incomplete.append(_incomplete(ev, req, eid))
        else:
            out.quarantined.append(_reject(ev, docs, eid))


def _texts(ev: RawEvent, refs: set[str]) -> tuple[str, str | None, str | None, str | None] | str:
    """(type, name, sessionId, userId) as stored, or why the event is invalid."""
    typ, name = ev.type, ev.name
    if type(typ) is not str or not typ or "\x00" in typ:
        return _text_problem("type", typ, required=True)
    if name is not None and (type(name) is not str or "\x00" in name):
        return _text_problem("name", name, required=False)
    sid, uid = ev.sessionId, ev.userId
    if sid is not None and (type(sid) is not str or sid not in refs):
        sid = canonical_uuid(sid)
        if sid is None:
            return "sessionId is not a UUID"
        refs.add(sid)
    if uid is not None and (type(uid) is not str or uid not in refs):
        uid = canonical_uuid(uid)
        if uid is None:
            return "userId is not a UUID"
        refs.add(uid)
    return typ, name, sid, uid


def _documents(ev: RawEvent, need: tuple[bool, bool] | None) -> tuple[str, str | None] | str | None:
    """(properties, session) as JSON text for jsonb; None when a required one is absent or
    null (the event is incomplete); else why the event is invalid. ``need``: whether
    properties / session are required."""
    raw = ev.properties
    if raw is None:  # absent: no properties, unless they are required
        if need is not None and need[0]:
            return None
        props = "{}"
    else:
        try:
            props = str(raw, "utf-8")
        except UnicodeDecodeError:
            return _json_problem("properties", None)
        if props[:1] != "{":
            odd = _odd_document("properties", props, need is not None and need[0])
            if odd is None or odd[:1] != "{":
                return odd
            props = odd
        elif "\\u" in props and (problem := _jsonb_problem(props)):
            return f"properties {problem}"
    raw = ev.session
    if raw is None:
        return None if need is not None and need[1] else (props, None)
    try:
        session = str(raw, "utf-8")
    except UnicodeDecodeError:
        return "session is not valid UTF-8"
    if session[:1] != "{":
        return _odd_session(props, session, need is not None and need[1])
    if "\\u" in session and (problem := _jsonb_problem(session)):
        return f"session {problem}"
    return props, session


def _odd_document(what: str, text: str, required: bool) -> str | None:
    """A properties text that is not an object: ``{}`` for an empty or null one (None when
    required: incomplete), else why it is invalid."""
    if text in ("", "null"):
        return None if required else "{}"
    return _json_problem(what, text)


def _odd_session(props: str, session: str, required: bool) -> tuple[str, None] | str | None:
    """(props, None) for an empty or null session (None when required: incomplete), else
    why it is invalid."""
    if session in ("", "null"):
        return None if required else (props, None)
    return _json_problem("session", session)


def _reject_large(ev: RawEvent, eid: str, cap: int) -> Quarantined:
    """An event over the cap: its reason, and only the start of it (never the whole)."""
    q = _reject(ev, "", eid)
    return Quarantined(
        f"event larger than the cap of {cap:,} characters (--max-event-kb)",
        q.payload[:4096],
        eid,
    )


def _incomplete(ev: RawEvent, required: RequiredFields | None, eid: str) -> Quarantined:
    assert required is not None
    missing = required.missing(ev)
    q = _reject(ev, incomplete_reason(missing), eid)
    return Quarantined(q.reason, q.payload, eid, tuple(missing))


def _outside(value: object, lo: int, hi: int) -> bool:
    """True if ``value`` is a valid timestamp outside the shard's ``(lo, hi]``."""
    try:
        ts_ms = (to_utc(value) - EPOCH) // _ONE_MS
    except TimestampError:
        return False
    return ts_ms <= lo or ts_ms > hi


def _all_canonical(ids: list[object]) -> bool:
    """True if every id is a canonical lowercase UUID string. One pass in C over the joined
    ids instead of a regex per id: fixed length and newline positions make every id exactly
    36 chars, the character class and the dash count/positions make it canonical."""
    n = len(ids)
    try:
        joined = "\n".join(ids)  # type: ignore[arg-type]  # TypeError if any is not a str
    except TypeError:
        return False
    if n == 0 or len(joined) != 37 * n - 1 or not _ID_CHARS.match(joined):
        return False
    dashes = "-" * n
    return (
        joined.count("\n") == n - 1
        and joined[36::37] == "\n" * (n - 1)
        and joined.count("-") == 4 * n
        and joined[8::37] == dashes
        and joined[13::37] == dashes
        and joined[18::37] == dashes
        and joined[23::37] == dashes
    )


def _first_of_each_id(records: list[Record]) -> tuple[list[Record], int]:
    seen: set[str] = set()
    kept = []
    for r in records:
        if r[0] not in seen:
            seen.add(r[0])
            kept.append(r)
    return kept, len(records) - len(kept)


# --- slow paths: reasons and payloads of rejected events -------------------------------


def _jsonb_problem(text: str) -> str | None:
    """Why jsonb would refuse this JSON text (\\u0000, unpaired surrogates), else None."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "is not valid JSON"
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            if "\x00" in node:
                return "contains \\u0000"
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "contains an unpaired surrogate"
    return None


def _json_problem(what: str, text: str | None) -> str:
    if text is None:
        return f"{what} is not valid UTF-8"
    return f"{what} is not an object"


def _id_problem(ev: RawEvent) -> str:
    if isinstance(ev, MalformedEvent):
        return f"undecodable event: {ev.error}"
    if ev.id is None:
        return "missing id"
    return "id is not a UUID"


def _ts_problem(value: object, exc: TimestampError) -> str:
    if value is None:
        return "missing timestamp"
    return f"unparseable timestamp: {_short_repr(value)} ({exc})"


def _text_problem(what: str, value: object, *, required: bool) -> str:
    if value is None or value == "":
        return f"missing {what}" if required else f"{what} is empty"
    if type(value) is not str:
        return f"{what} is not a string"
    return f"{what} contains a NUL character"


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject(ev: RawEvent, reason: str, event_id: str | None) -> Quarantined:
    if isinstance(ev, MalformedEvent):
        return Quarantined(reason=reason, payload=ev.raw, event_id=None)
    try:
        payload = msgspec.json.encode(ev).decode("utf-8", "replace")
    except (TypeError, UnicodeError, ValueError):  # e.g. a lone surrogate in a str field
        payload = _short_repr(ev, 100_000)
    return Quarantined(reason=reason, payload=payload, event_id=event_id)
