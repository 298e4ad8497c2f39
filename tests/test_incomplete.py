"""Events lacking required fields: re-read, quarantined, never loaded stripped; repaired later.

Real sandbox (its missing-fields knob) and real PostgreSQL, virtual time.
"""

from __future__ import annotations

from typing import Any

import msgspec

from etl.batching import fill_incomplete
from etl.clock import FakeClock
from etl.source.datasync import EVENTS as EVENTS_STREAM
from etl.sources.events import REQUIRED_FIELDS, RawEvent
from etl.transform import RequiredFields, transform_page
from tests.ingest_harness import Recorder, ingest, loaded_ids, query
from tests.test_ingest import EVENTS, assert_exact, start

STRIPPED = (
    "SELECT count(*) AS n FROM events WHERE session_id IS NULL OR user_id IS NULL"
    " OR name IS NULL OR session IS NULL OR properties = '{}'::jsonb"
)
T = 1_771_533_513_000


def event(n: int, **fields: Any) -> RawEvent:
    base: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "sessionId": "11111111-1111-4111-8111-111111111111",
        "userId": "22222222-2222-4222-8222-222222222222",
        "type": "page_view",
        "name": f"event_{n}",
        "properties": msgspec.Raw(b'{"page": "/home"}'),
        "timestamp": T - n,
        "session": msgspec.Raw(b'{"deviceType": "mobile"}'),
    }
    base.update(fields)
    return RawEvent(**{k: v for k, v in base.items() if v is not ...})


def test_an_event_lacking_a_declared_field_is_held_back_with_the_fields_named() -> None:
    """Absent or null required fields make an event incomplete: not a record, and the reason
    names every missing field; without a declaration the same event loads as before."""
    required = RequiredFields(REQUIRED_FIELDS)
    page = [
        event(1),
        event(2, userId=None, name=...),
        event(3, properties=msgspec.Raw(b"null")),
        event(4, session=...),
    ]
    out = transform_page(page, required=required)
    assert [r[0] for r in out.records] == [page[0].id]
    reasons = {q.event_id: q.reason for q in out.incomplete}
    assert reasons == {
        page[1].id: "missing required fields: userId, name",
        page[2].id: "missing required fields: properties",
        page[3].id: "missing required fields: session",
    }
    assert out.last is not None and out.last.id == page[3].id  # the cursor still moves on
    assert len(transform_page(page).records) == 4


def test_a_reread_fills_in_complete_copies_only() -> None:
    """A re-read of the page supplies the complete copy of an incomplete event; an event
    incomplete in both reads stays incomplete."""
    required = RequiredFields(REQUIRED_FIELDS)
    first = transform_page([event(1, name=...), event(2, userId=None)], required=required)
    again = transform_page([event(1), event(2, userId=None)], required=required)
    assert fill_incomplete(EVENTS_STREAM, first, again) == 1
    assert [r[0] for r in first.records] == [event(1).id]
    assert [q.event_id for q in first.incomplete] == [event(2).id]


def test_required_fields_must_be_event_fields() -> None:
    """A stream declaring a field events do not have is a programming error, caught early."""
    try:
        RequiredFields(("id", "user"))
    except ValueError as exc:
        assert "user" in str(exc)
    else:
        raise AssertionError("accepted an unknown field")


async def test_missing_fields_are_re_read_and_nothing_is_stripped(
    sandbox: Any, db_url: str
) -> None:
    """With fields missing from many pages, re-reading the page finds complete copies: the
    load is exact, no row is stripped, nothing is quarantined, and the run counts it."""
    clock = FakeClock()
    sb = await start(sandbox, clock, p_missing_fields=0.5, fault_seed=3)
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, pipeline={"page_size": 1000})
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert (await query(db_url, STRIPPED))[0]["n"] == 0
    assert (await query(db_url, "SELECT count(*) AS n FROM quarantine"))[0]["n"] == 0
    assert outcome.counters.extra["incomplete_reread"] >= 5
    assert outcome.counters.quarantined == 0


async def test_incomplete_events_are_quarantined_then_loaded_when_a_complete_copy_comes(
    sandbox: Any, db_url: str
) -> None:
    """Without re-reads, incomplete events go to quarantine with the fields named and are
    not loaded; the next run re-reads their ranges, loads the complete copies and marks the
    quarantine rows resolved: the table ends exact."""
    clock = FakeClock()
    sb = await start(sandbox, clock, p_missing_fields=0.3, fault_seed=5)
    first = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events"},
        pipeline={"page_size": 1000, "rereads": 0},
    )
    held = await query(db_url, "SELECT event_id, reason, missing FROM quarantine")
    assert held and first.counters.quarantined == len(held)
    assert all(r["reason"].startswith("missing required fields: ") for r in held)
    loaded = set(await loaded_ids(db_url))
    assert not loaded & {r["event_id"] for r in held}
    assert len(loaded) == EVENTS - len(held)
    assert (await query(db_url, STRIPPED))[0]["n"] == 0

    sb.state.faults.enabled = False
    reporter = Recorder()
    second = await ingest(
        sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"}, reporter=reporter
    )
    assert second.status == "succeeded"
    assert "re-reading" in second.planned
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert second.counters.extra["repaired"] == len(held)
    rows = await query(db_url, "SELECT count(*) AS n FROM quarantine WHERE resolved_at IS NULL")
    assert rows[0]["n"] == 0
    assert any("quarantined incomplete" in m for m in reporter.messages)


async def test_stripped_rows_of_an_older_version_are_repaired_in_place(
    sandbox: Any, db_url: str
) -> None:
    """Rows an older version loaded stripped (NULLs where the event has values) are found,
    their ranges re-read, and completed in place: counted, logged, and not re-read again."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    assert (await ingest(sb.base_url, sb.api_key, db_url, clock)).status == "succeeded"
    truth = await query(db_url, "SELECT id, user_id, name, session FROM events ORDER BY id")
    victims = [r["id"] for r in truth[::997]]
    await query(
        db_url,
        "UPDATE events SET user_id = NULL, name = NULL WHERE id = ANY($1::uuid[])",
        victims,
    )
    await query(db_url, "UPDATE events SET session = NULL WHERE id = $1", victims[0])
    reporter = Recorder()
    second = await ingest(sb.base_url, sb.api_key, db_url, clock, reporter=reporter)
    assert second.status == "succeeded"
    assert second.counters.extra["repaired"] == len(victims)
    assert second.counters.inserted == 0
    assert any("stripped row(s) in place" in m for m in reporter.messages)
    after = await query(db_url, "SELECT id, user_id, name, session FROM events ORDER BY id")
    assert after == truth
    third = await ingest(sb.base_url, sb.api_key, db_url, clock)
    assert "re-reading" not in third.planned


async def test_a_fault_storm_ends_exact_with_every_missing_field_event_accounted_for(
    sandbox: Any, db_url: str
) -> None:
    """bench/chaos.py's R2, small: 5xx with HTML bodies, truncated JSON, dropped connections,
    missing fields, cursors and stream tokens that expire within seconds, mixed timestamp
    formats, duplicates at shard edges. The load is exact, no row is stripped, and every
    event the API served without its fields was re-read complete (none left quarantined)."""
    clock = FakeClock()
    sb = await start(
        sandbox,
        clock,
        p_500=0.03,
        p_502=0.03,
        p_503=0.03,
        p_504=0.03,
        p_truncate=0.04,
        p_drop=0.04,
        p_missing_fields=0.3,
        cursor_ttl=3.0,
        token_ttl=4.0,
        timestamp_formats="mixed",
        tie_fraction=0.01,
        fault_seed=11,
    )
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, pipeline={"page_size": 1000})
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert (await query(db_url, STRIPPED))[0]["n"] == 0
    rows = await query(
        db_url,
        "SELECT count(*) AS n FROM quarantine WHERE missing IS NOT NULL AND resolved_at IS NULL",
    )
    assert rows[0]["n"] == 0
    assert sb.stats.faults["missingFields"] > 0
    assert outcome.counters.extra["incomplete_reread"] > 0
    assert outcome.counters.retries > 0
