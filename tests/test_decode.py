"""etl.source.decode: page envelopes (nested, flat, broken) and error bodies."""

from __future__ import annotations

import msgspec
import pytest

from etl.errors import TransientSourceError
from etl.source.decode import DecodeError, decode_error_body, decode_page
from etl.sources.events import MalformedEvent

EVENT = (
    b'{"id":"56a349b5-7243-4e0c-9fd8-f2c1eb2a5d35",'
    b'"sessionId":"0ae5e27f-bcc5-4d99-b744-3ce64d3623a9",'
    b'"userId":"1f2a12b4-1bdc-463d-ba74-f6d849f5b76f","type":"click","name":"event_e8o287",'
    b'"properties":{"page":"/home"},"timestamp":1769541612369,'
    b'"session":{"id":"0ae5e27f-bcc5-4d99-b744-3ce64d3623a9","deviceType":"tablet",'
    b'"browser":"Edge"}}'
)
PAG = b'"pagination":{"limit":5000,"hasMore":true,"nextCursor":"eyJpZCI6","cursorExpiresIn":116}'
META = b'"meta":{"total":3000000,"returned":1,"requestId":"01993a99"}'


def body(data: bytes = b"[" + EVENT + b"]", *parts: bytes) -> bytes:
    return b'{"data":' + data + b"".join(b"," + p for p in parts) + b"}"


def test_recorded_envelope_decodes_with_raw_properties() -> None:
    """The recorded shape: events typed, properties/session kept as the original JSON bytes."""
    page = decode_page(body(b"[" + EVENT + b"]", PAG, META))
    assert (page.has_more, page.next_cursor, page.total) == (True, "eyJpZCI6", 3000000)
    (ev,) = page.events
    assert ev.id == "56a349b5-7243-4e0c-9fd8-f2c1eb2a5d35"
    assert ev.timestamp == 1769541612369
    assert ev.properties is not None
    assert bytes(ev.properties) == b'{"page":"/home"}'
    assert ev.session is not None
    assert bytes(ev.session).startswith(b'{"id":"0ae5e27f')


@pytest.mark.parametrize(
    ("parts", "has_more", "cursor"),
    [
        # nested pagination
        ([b'"pagination":{"hasMore":true,"nextCursor":"c1"}'], True, "c1"),
        ([b'"pagination":{"hasMore":false,"nextCursor":null}'], False, None),
        ([b'"pagination":{"hasMore":false}'], False, None),
        ([b'"pagination":{"hasMore":true}'], True, None),  # caller rebuilds the cursor
        # hasMore missing: the cursor decides (the 2.6M-events bug)
        ([b'"pagination":{"nextCursor":"c1"}'], True, "c1"),
        ([b'"pagination":{"nextCursor":null}'], False, None),
        # flat envelope of the docs
        ([b'"hasMore":true', b'"nextCursor":"c2"'], True, "c2"),
        ([b'"hasMore":false', b'"nextCursor":null'], False, None),
        ([b'"nextCursor":"c2"'], True, "c2"),
        # nested wins over flat
        ([b'"pagination":{"hasMore":false,"nextCursor":null}', b'"hasMore":true'], False, None),
        ([b'"pagination":{"limit":5}', b'"hasMore":true', b'"nextCursor":"c3"'], True, "c3"),
        # nothing known: events present -> go on from the last position
        ([], True, None),
        ([b'"pagination":{}'], True, None),
        ([b'"pagination":null'], True, None),
        # wrong types in pagination take the slow path and are read leniently
        ([b'"pagination":{"hasMore":"false","nextCursor":null}'], False, None),
        ([b'"pagination":{"hasMore":1,"nextCursor":"c4"}'], True, "c4"),
        ([b'"pagination":{"hasMore":true,"nextCursor":42}'], True, None),
        ([b'"pagination":"oops"', b'"nextCursor":"c5"'], True, "c5"),
    ],
)
def test_has_more_rule(parts: list[bytes], has_more: bool, cursor: str | None) -> None:
    """hasMore if it is a bool; else nextCursor if the key exists; else 'events present'."""
    page = decode_page(body(b"[" + EVENT + b"]", *parts))
    assert (page.has_more, page.next_cursor) == (has_more, cursor)
    assert len(page.events) == 1


@pytest.mark.parametrize(
    "parts",
    [[], [b'"pagination":{}'], [b'"pagination":{"hasMore":true}']],
)
def test_empty_page_without_cursor_ends_only_if_not_told_otherwise(parts: list[bytes]) -> None:
    """An empty data array with no hints means done; an explicit hasMore:true is kept."""
    page = decode_page(body(b"[]", *parts))
    assert page.events == []
    assert page.has_more is (parts == [b'"pagination":{"hasMore":true}'])


def test_missing_and_extra_fields_are_tolerated() -> None:
    """Events may lack any field and carry unknown ones; envelopes may carry unknown keys."""
    page = decode_page(
        body(b'[{"id":"x","extra":[1,2],"timestamp":"2026-01-27T19:19:13.629Z"},{}]', b'"x":1')
    )
    first, second = page.events
    assert (first.id, first.type, first.timestamp) == ("x", None, "2026-01-27T19:19:13.629Z")
    assert bytes(first.properties or b"") == b""  # absent -> empty Raw
    assert second.id is None


def test_null_properties_is_raw_null() -> None:
    """JSON null in properties/session survives as the bytes 'null' (transform maps it)."""
    (ev,) = decode_page(body(b'[{"id":"x","properties":null,"session":null}]')).events
    assert bytes(ev.properties or b"") == b"null"
    assert bytes(ev.session or b"") == b"null"


@pytest.mark.parametrize(
    "props", [b'"text"', b"[1,2]", b"42", b"true", b'{"nested":{"a":[1,{"b":null}]}}']
)
def test_properties_of_any_json_type_stay_raw(props: bytes) -> None:
    """properties is not validated here: any JSON value comes through as raw bytes."""
    (ev,) = decode_page(body(b'[{"id":"x","properties":' + props + b"}]")).events
    assert bytes(ev.properties or b"") == props


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (b"null", "event is not a JSON object"),
        (b'"just a string"', "event is not a JSON object"),
        (b"[1,2]", "event is not a JSON object"),
        (b'{"id":"\xff\xfe"}', "event is not valid UTF-8"),
    ],
)
def test_one_malformed_event_does_not_cost_the_page(bad: bytes, error: str) -> None:
    """A non-object or undecodable element becomes a MalformedEvent; its neighbours survive."""
    page = decode_page(body(b"[" + EVENT + b"," + bad + b"," + EVENT + b"]", PAG, META))
    assert (page.has_more, page.next_cursor, page.total) == (True, "eyJpZCI6", 3000000)
    good1, malformed, good2 = page.events
    assert good1.id == good2.id == "56a349b5-7243-4e0c-9fd8-f2c1eb2a5d35"
    assert isinstance(malformed, MalformedEvent)
    assert malformed.error == error
    assert malformed.raw == bad.decode("utf-8", "replace")
    assert malformed.id is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (body()[:-40], "truncated"),
        (body(b"[" + EVENT + b"]", PAG)[:200], "truncated"),
        (b"<html><body>502 Bad Gateway</body></html>", "malformed"),
        (b"[]", "object"),
        (b'"data"', "object"),
        (b"{}", "without a data array"),
        (b'{"error":"Bad Gateway","message":"x"}', "without a data array"),
        (b'{"data":null}', "array"),
        (b'{"data":{"id":1}}', "array"),
        (b'{"data":[1,2', "truncated"),
    ],
)
def test_unusable_body_raises_transient_decode_error(raw: bytes, reason: str) -> None:
    """Invalid, truncated or data-less bodies raise DecodeError (retryable), body not quoted."""
    with pytest.raises(DecodeError, match=reason) as info:
        decode_page(raw)
    assert isinstance(info.value, TransientSourceError)
    assert f"({len(raw)} bytes)" in str(info.value)
    assert "Bad Gateway" not in str(info.value)


def test_total_is_optional_and_typed() -> None:
    """meta.total is an int when given, else None (also when it has the wrong type)."""
    assert decode_page(body()).total is None
    assert decode_page(body(b"[]", b'"meta":{"total":"3000000"}')).total is None


def test_page_events_roundtrip_through_msgspec() -> None:
    """Decoded events re-encode to the original JSON (this is the quarantine payload)."""
    (ev,) = decode_page(body()).events
    assert msgspec.json.decode(msgspec.json.encode(ev)) == msgspec.json.decode(EVENT)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"error":"Too Many Requests","message":"Rate limit exceeded. Try again in 46 '
            b'seconds.","code":"RATE_LIMIT_EXCEEDED","rateLimit":{"limit":10,"remaining":0,'
            b'"reset":46,"retryAfter":46}}',
            ("RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Try again in 46 seconds.", 46.0),
        ),
        (  # shortened variant: no message, no retryAfter
            b'{"error":"Too Many Requests","code":"RATE_LIMIT_EXCEEDED",'
            b'"rateLimit":{"limit":10,"remaining":0,"reset":12}}',
            ("RATE_LIMIT_EXCEEDED", "Too Many Requests", 12.0),
        ),
        (
            b'{"error":"Bad Request","message":"Cursor expired 35392 minute(s) ago",'
            b'"code":"CURSOR_EXPIRED"}',
            ("CURSOR_EXPIRED", "Cursor expired 35392 minute(s) ago", None),
        ),
        (b'{"code":7,"message":null,"rateLimit":{"retryAfter":"soon"}}', (None, None, None)),
        (b'{"rateLimit":{"retryAfter":-1,"reset":2.5}}', (None, None, 2.5)),
        (b"<html><head><title>502 Bad Gateway</title></head></html>", (None, None, None)),
        (b"", (None, None, None)),
        (b'{"error":"Not Fou', (None, None, None)),
        (b"[1,2]", (None, None, None)),
        (b'"text"', (None, None, None)),
        (b'{"message":"\xff"}', (None, None, None)),
    ],
)
def test_decode_error_body(
    raw: bytes, expected: tuple[str | None, str | None, float | None]
) -> None:
    """(code, message, retry_after) from the error envelope; anything else gives Nones."""
    assert decode_error_body(raw) == expected


@pytest.mark.parametrize(
    "bad",
    [
        b'{"id":"x","type":"\\ud800"}',  # msgspec cannot even skip a lone surrogate escape
        b'{"id":"x","properties":{"k":"\\udc00"}}',
    ],
)
def test_lone_surrogate_isolates_its_event(bad: bytes) -> None:
    """A page msgspec rejects outright is split by stdlib json; only the bad event is lost."""
    page = decode_page(body(b"[" + EVENT + b"," + bad + b"]", PAG, META))
    assert (page.has_more, page.next_cursor, page.total) == (True, "eyJpZCI6", 3000000)
    good, malformed = page.events
    assert good.id == "56a349b5-7243-4e0c-9fd8-f2c1eb2a5d35"
    assert bytes(good.properties or b"") == b'{"page": "/home"}'  # re-serialised by json
    assert isinstance(malformed, MalformedEvent)
    assert '"x"' in malformed.raw
