"""etl.transform: valid events become Records, invalid ones are quarantined with a reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from etl.models import Position
from etl.source.decode import decode_page
from etl.sources.events import EVENT_COLUMNS, RawEvent
from etl.transform import canonical_uuid, event_position, transform_page

ID = "56a349b5-7243-4e0c-9fd8-f2c1eb2a5d35"
SID = "0ae5e27f-bcc5-4d99-b744-3ce64d3623a9"
UID = "1f2a12b4-1bdc-463d-ba74-f6d849f5b76f"
TS = 1769541612369
UTC = dt.UTC


def event(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": ID,
        "sessionId": SID,
        "userId": UID,
        "type": "click",
        "name": "event_e8o287",
        "properties": {"page": "/home"},
        "timestamp": TS,
        "session": {"id": SID, "deviceType": "tablet", "browser": "Edge"},
    }
    for key, value in over.items():
        if value is _DROP:
            ev.pop(key)
        else:
            ev[key] = value
    return ev


_DROP = object()


def events_of(*evs: dict[str, Any] | bytes) -> list[RawEvent]:
    """Decode exactly as the source does (so properties/session are msgspec.Raw)."""
    items = [e if isinstance(e, bytes) else msgspec.json.encode(e) for e in evs]
    return decode_page(b'{"data":[' + b",".join(items) + b"]}").events


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def test_valid_event_becomes_a_record_in_column_order() -> None:
    """All fields land in EVENT_COLUMNS order; JSON details stay compact JSON text."""
    result = transform_page(events_of(event()))
    assert result.quarantined == []
    (rec,) = result.records
    assert len(rec) == len(EVENT_COLUMNS)
    assert rec == (
        ID,
        SID,
        UID,
        "click",
        "event_e8o287",
        dt.datetime(2026, 1, 27, 19, 20, 12, 369000, tzinfo=UTC),
        '{"page":"/home"}',
        '{"id":"0ae5e27f-bcc5-4d99-b744-3ce64d3623a9","deviceType":"tablet","browser":"Edge"}',
        "1769541612369",
    )


@pytest.mark.parametrize(
    ("ts", "raw"),
    [
        (TS, "1769541612369"),
        ("2026-01-27T19:20:12.369Z", "2026-01-27T19:20:12.369Z"),
        ("2026-01-28T00:50:12.369+05:30", "2026-01-28T00:50:12.369+05:30"),
        ("1769541612369", "1769541612369"),
        ("Tue, 27 Jan 2026 19:20:12 GMT", "Tue, 27 Jan 2026 19:20:12 GMT"),
    ],
)
def test_timestamp_is_normalised_and_kept_raw(ts: object, raw: str) -> None:
    """occurred_at is aware UTC; timestamp_raw is the value as received."""
    (rec,) = transform_page(events_of(event(timestamp=ts))).records
    assert rec[5].utcoffset() == dt.timedelta(0)
    assert rec[5].replace(microsecond=0) == dt.datetime(2026, 1, 27, 19, 20, 12, tzinfo=UTC)
    assert rec[8] == raw


@pytest.mark.parametrize(
    ("over", "record_index", "expected"),
    [
        ({"properties": _DROP}, 6, "{}"),
        ({"properties": None}, 6, "{}"),
        ({"properties": {}}, 6, "{}"),
        ({"session": _DROP}, 7, None),
        ({"session": None}, 7, None),
        ({"sessionId": None}, 1, None),
        ({"userId": _DROP}, 2, None),
        ({"name": None}, 4, None),
        ({"name": ""}, 4, ""),
        ({"id": ID.upper()}, 0, ID),
        ({"id": "{" + ID + "}"}, 0, ID),
        ({"sessionId": SID.upper()}, 1, SID),
    ],
)
def test_optional_and_normalised_fields(
    over: dict[str, Any], record_index: int, expected: Any
) -> None:
    """Missing optional fields get their documented defaults; ids are normalised."""
    (rec,) = transform_page(events_of(event(**over))).records
    assert rec[record_index] == expected


def test_escaped_surrogate_pairs_are_valid_properties() -> None:
    """A properly paired \\ud83d\\ude00 escape is fine for jsonb and kept as sent."""
    raw = (
        b'{"id":"' + ID.encode() + b'","type":"t","timestamp":1769541612369,'
        b'"properties":{"esc":"\\ud83d\\ude00","plain":"\xf0\x9f\x98\x80"}}'
    )
    (rec,) = transform_page(events_of(raw)).records
    assert msgspec.json.decode(rec[6]) == {"esc": "\U0001f600", "plain": "\U0001f600"}


BAD: list[tuple[dict[str, Any] | bytes, str]] = [
    (event(id=_DROP), "missing id"),
    (event(id=None), "missing id"),
    (event(id="abc"), "id is not a UUID"),
    (event(id=12345), "id is not a UUID"),
    (event(id=ID[:-1]), "id is not a UUID"),
    (event(timestamp=_DROP), "missing timestamp"),
    (event(timestamp="abc"), "unparseable timestamp: 'abc' (no known format)"),
    (event(timestamp=True), "unparseable timestamp: True (unsupported type bool)"),
    (event(timestamp=-5), "unparseable timestamp: -5 (out of range"),
    (event(timestamp="2200-01-01T00:00:00Z"), "unparseable timestamp: '2200-01-01T00:00:00Z'"),
    (event(timestamp={"ms": TS}), "unparseable timestamp: {'ms': 1769541612369}"),
    (event(type=_DROP), "missing type"),
    (event(type=""), "missing type"),
    (event(type=7), "type is not a string"),
    (event(type="cl\x00ick"), "type contains a NUL character"),
    (event(name=["x"]), "name is not a string"),
    (event(sessionId="nope"), "sessionId is not a UUID"),
    (event(sessionId={"id": SID}), "sessionId is not a UUID"),
    (event(userId=42), "userId is not a UUID"),
    (event(properties="text"), "properties is not an object"),
    (event(properties=[1, 2]), "properties is not an object"),
    (event(properties=5), "properties is not an object"),
    (event(properties={"a": "x\x00y"}), "properties contains \\u0000"),
    (event(session="tablet"), "session is not an object"),
    (event(session={"a": "\x00"}), "session contains \\u0000"),
    (
        b'{"id":"' + ID.encode() + b'","type":"t","timestamp":1,"properties":{"a":"\xff"}}',
        "properties is not valid UTF-8",
    ),
    (b"null", "undecodable event: event is not a JSON object"),
    (b'"str"', "undecodable event"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD, ids=[r for _, r in BAD])
def test_invalid_event_is_quarantined_with_reason(raw: dict[str, Any] | bytes, reason: str) -> None:
    """An event that cannot be made valid is quarantined (never dropped), the page goes on."""
    good = event(id=uid(1), timestamp=TS - 10)
    result = transform_page(events_of(raw, good))
    assert [r[0] for r in result.records] == [uid(1)]
    (q,) = result.quarantined
    assert q.reason.startswith(reason)
    assert q.payload  # the event as received, as JSON text
    if not isinstance(raw, bytes):
        decoded = msgspec.json.decode(q.payload)
        assert decoded == {k: v for k, v in raw.items() if v is not None}


def test_quarantine_keeps_a_valid_event_id_only() -> None:
    """event_id is the canonical id when the id itself was valid, else None (the order of
    quarantined events within a page carries no meaning: the table has none)."""
    result = transform_page(events_of(event(type=None), event(id="x", timestamp=TS - 1)))
    by_reason = {q.reason: q.event_id for q in result.quarantined}
    assert by_reason == {"missing type": ID, "id is not a UUID": None}


def test_duplicate_ids_within_a_page_keep_the_first() -> None:
    """Repeats of an id in one page are counted, the first occurrence is kept."""
    result = transform_page(
        events_of(
            event(name="first"),
            event(id=uid(2), timestamp=TS - 1),
            event(name="second", timestamp=TS - 2),
        )
    )
    assert [(r[0], r[4]) for r in result.records] == [(ID, "first"), (uid(2), "event_e8o287")]
    assert result.duplicates == 1


@pytest.mark.parametrize(
    ("lower", "upper", "kept"),
    [
        (None, None, [100, 200, 200, 300]),
        (200, None, [300]),  # lower bound exclusive
        (None, 200, [100, 200, 200]),  # upper bound inclusive
        (100, 200, [200, 200]),
        (300, None, []),
        (None, 99, []),
    ],
)
def test_shard_bounds_are_half_open(lower: int | None, upper: int | None, kept: list[int]) -> None:
    """Only lower_ts < ts_ms <= upper_ts is kept; the rest is counted as out_of_range."""
    stamps = [300, 200, 200, 100]  # newest first, like the API (equal timestamps too)
    evs = events_of(*(event(id=uid(i), timestamp=TS + ts) for i, ts in enumerate(stamps)))
    result = transform_page(
        evs,
        lower_ts=TS + lower if lower is not None else None,
        upper_ts=TS + upper if upper is not None else None,
    )
    assert sorted(int(r[8]) - TS for r in result.records) == sorted(kept)
    assert result.out_of_range == len(stamps) - len(kept)
    assert result.quarantined == []


def test_iso_and_number_map_to_the_same_ts_ms_for_bounds() -> None:
    """ts_ms comes from the normalised instant, so an ISO string compares like its number."""
    evs = events_of(event(timestamp="2026-01-27T19:20:12.369Z"))
    assert transform_page(evs, upper_ts=TS).records
    assert not transform_page(evs, upper_ts=TS - 1).records
    assert transform_page(evs, lower_ts=TS - 1).records
    assert not transform_page(evs, lower_ts=TS).records


def test_positions_are_the_last_valid_event_and_the_minimum() -> None:
    """last = (ts_ms, id) of the last event in page order with a valid id and timestamp."""
    evs = events_of(
        event(id=uid(1), timestamp=TS),
        event(id=uid(2), timestamp="2026-01-27T19:20:12.300Z", type=None),  # quarantined
        event(id=uid(3), timestamp=TS - 500),
        event(id="bad", timestamp=TS - 900),  # no valid id: not a position
        event(id=uid(4), timestamp="garbage"),  # no valid ts: not a position
    )
    result = transform_page(evs, shard_id="s1")
    assert result.last == Position(TS - 500, uid(3))
    assert result.min_ts == TS - 500  # over the same events as last
    assert result.positions == (result.last, result.min_ts)
    assert result.shard_id == "s1"
    assert len(result.records) == 2
    assert len(result.quarantined) == 3


def test_out_of_range_events_still_move_the_position() -> None:
    """An event another shard owns is still handled: the position moves past it."""
    evs = events_of(event(id=uid(1), timestamp=TS), event(id=uid(2), timestamp=TS - 50))
    result = transform_page(evs, lower_ts=TS - 10)
    assert result.last == Position(TS - 50, uid(2))
    assert result.min_ts == TS - 50
    assert result.out_of_range == 1


def test_unparseable_timestamp_below_the_lower_bound_belongs_to_the_next_shard() -> None:
    """After an event below lower_ts, a bad timestamp is counted out of range, not quarantined."""
    evs = events_of(
        event(id=uid(1), timestamp="junk"),  # before the bound was crossed: ours, quarantined
        event(id=uid(2), timestamp=TS - 50),
        event(id=uid(3), timestamp="junk"),
    )
    result = transform_page(evs, lower_ts=TS - 10)
    assert [q.event_id for q in result.quarantined] == [uid(1)]
    assert result.out_of_range == 2


def test_empty_page() -> None:
    """No events: nothing kept, no positions."""
    result = transform_page([])
    assert (result.records, result.quarantined, result.last, result.min_ts) == ([], [], None, None)


def test_plain_raw_event_without_raw_bytes_is_accepted() -> None:
    """A RawEvent built in code (properties/session None) transforms like a decoded one."""
    (rec,) = transform_page([RawEvent(id=ID, type="click", timestamp=TS)]).records
    assert rec[6] == "{}"
    assert rec[7] is None


def test_mixed_valid_ids_take_the_per_event_path() -> None:
    """One non-canonical id on a page does not affect the validation of the others."""
    evs = events_of(
        event(id=uid(1), timestamp=TS),
        event(id=uid(2).upper(), timestamp=TS - 1),
        event(id="zz", timestamp=TS - 2),
    )
    result = transform_page(evs)
    assert [r[0] for r in result.records] == [uid(1), uid(2)]
    assert [q.reason for q in result.quarantined] == ["id is not a UUID"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ID, ID),
        (ID.upper(), ID),
        (ID.replace("-", ""), ID),
        ("urn:uuid:" + ID, ID),
        ("", None),
        ("x" * 36, None),
        (None, None),
        (123, None),
    ],
)
def test_canonical_uuid(value: object, expected: str | None) -> None:
    """Any spelling uuid.UUID accepts is normalised; anything else is None."""
    assert canonical_uuid(value) == expected


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, Position(TS, ID)),
        ({"timestamp": "2026-01-27T19:20:12.369Z"}, Position(TS, ID)),
        ({"id": "nope"}, None),
        ({"timestamp": "nope"}, None),
    ],
)
def test_event_position(over: dict[str, Any], expected: Position | None) -> None:
    """event_position gives (ts_ms, id) or None for an invalid event."""
    (ev,) = events_of(event(**over))
    assert event_position(ev) == expected
