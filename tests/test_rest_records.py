"""A record becomes a row of the stream's typed columns, or a reject with its reason."""

from __future__ import annotations

import datetime as dt
import uuid

from etl.rest.records import Rejected, cursor_param, records_at, to_row
from etl.rest.spec import Column, StreamSpec

STREAM = StreamSpec(
    name="s",
    path="/s",
    primary_key=("id",),
    columns=(
        Column("id", "bigint", ("id",)),
        Column("when", "timestamp", ("meta", "when"), nullable=False),
        Column("ref", "uuid", ("ref",)),
        Column("score", "number", ("score",)),
        Column("flagged", "boolean", ("flag",), exists=True),
        Column("extra", "json", ("extra",)),
        Column("label", "text", ("label",)),
    ),
)
UTC = dt.UTC


def test_values_are_typed_and_timestamps_normalized_to_utc():
    """Epoch ms, ISO with an offset and RFC 2822 all become the same UTC instant."""
    base = {"id": 2**40, "ref": "6f1c2b1e-0000-4000-8000-000000000001", "score": "2.5"}
    instants = (1769541612000, "2026-01-27T20:20:12+01:00", "Tue, 27 Jan 2026 19:20:12 GMT")
    rows = [to_row(STREAM, {**base, "meta": {"when": w}}) for w in instants]
    assert all(not isinstance(r, Rejected) for r in rows)
    expected = dt.datetime(2026, 1, 27, 19, 20, 12, tzinfo=UTC)
    assert {r[1] for r in rows} == {expected}  # type: ignore[index]
    first = rows[0]
    assert first[0] == 2**40 and first[2] == uuid.UUID(base["ref"]) and first[3] == 2.5  # type: ignore[index]
    assert first[4] is False and first[5] is None and first[6] is None  # type: ignore[index]


def test_nested_values_are_kept_as_json_and_text_takes_any_shape():
    """A json column keeps the structure; a text column given an object gets its JSON."""
    row = to_row(STREAM, {"id": 1, "meta": {"when": 0}, "flag": None, "extra": {"a": [1]},
                          "label": {"x": 1}})  # fmt: skip
    assert not isinstance(row, Rejected)
    assert row[4] is False and row[5] == '{"a": [1]}' and row[6] == '{"x": 1}'


def test_bad_records_are_rejected_with_the_column_and_the_reason():
    """Missing key, missing required field, wrong type, out of range, bad uuid, bad time."""
    ok = {"id": 1, "meta": {"when": "2026-01-01T00:00:00Z"}}
    cases = {
        "id: missing": {**ok, "id": None},
        "when: missing": {"id": 1},
        "id: expected an integer": {**ok, "id": "one"},
        "id: 9223372036854775808 is out of range for bigint": {**ok, "id": 2**63},
        "ref: not a uuid": {**ok, "ref": "nope"},
        "when: not a timestamp": {**ok, "meta": {"when": "last tuesday"}},
    }
    for reason, record in cases.items():
        got = to_row(STREAM, record)
        assert isinstance(got, Rejected) and got.reason == reason, (reason, got)
    assert to_row(STREAM, [1, 2]) == Rejected("not an object", "[1, 2]")


def test_records_path_and_cursor_parameter():
    """Records come from the path given; the cursor parameter is the value minus look-back."""
    assert records_at({"data": {"items": [1, 2]}}, ("data", "items")) == [1, 2]
    assert records_at({"data": {"items": None}}, ("data", "items")) == []
    column = Column("updated_at", "timestamp", ("updated_at",))
    assert cursor_param("2026-01-27T19:20:12Z", column, 60) == "2026-01-27T19:19:12Z"
    assert cursor_param("1000", Column("v", "bigint", ("v",)), 10) == "990"
