"""A page that never decodes, or is too large, does not block its shard.

The sandbox's ``poison_events`` knob serves some events as broken JSON every time, so any
page holding one cannot be read. The run asks that range again in smaller pages, down to the
single record, quarantines its raw bytes and goes on: every other event is loaded.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec

from etl.clock import FakeClock
from etl.models import Position
from etl.source.decode import salvage_position
from etl.sources.events import RawEvent
from etl.transform import transform_page
from tests.ingest_harness import ingest, loaded_ids, query
from tests.test_ingest import EVENTS, start


def test_where_a_broken_page_ends_is_read_from_its_raw_bytes() -> None:
    """The nextCursor of an undecodable body gives the position (and the cursor); without
    one, the first event's id and timestamp do; with neither there is nothing to go on."""
    cursor = base64.b64encode(
        json.dumps(
            {"id": "ab" * 4 + "-0000-4000-8000-" + "0" * 12, "ts": 1769541612369, "v": 2, "exp": 1}
        ).encode()
    ).decode()
    body = ('{"data":[{"id":"x" "oops"}],"pagination":{"nextCursor":"' + cursor + '"}}').encode()
    found = salvage_position(body)
    assert found is not None and found[1] == cursor
    assert found[0] == Position(1769541612369, "abababab-0000-4000-8000-000000000000")
    only_event = b'{"data":[{"id":"ABABABAB-0000-4000-8000-000000000000","type":"a" "b",'
    only_event += b'"timestamp":"2026-01-27T19:20:12.369Z"'
    assert salvage_position(only_event) == (
        Position(1769541612369, "abababab-0000-4000-8000-000000000000"),
        None,
    )
    assert salvage_position(b'{"data":[{"type"') is None


def test_an_event_over_the_size_cap_is_quarantined_not_loaded() -> None:
    """An event whose text passes the cap is refused with a reason, and only its start is
    kept; the others on the page load."""
    big = msgspec.Raw(b'{"blob": "' + b"x" * 5000 + b'"}')
    small = msgspec.Raw(b'{"page": "/home"}')
    events = [
        RawEvent(
            id=f"00000000-0000-4000-8000-00000000000{n}",
            type="t",
            timestamp=10**12 + n,
            properties=props,
        )
        for n, props in ((1, small), (2, big))
    ]
    out = transform_page(events, max_text=1000)
    assert [r[0] for r in out.records] == [events[0].id]
    [q] = out.quarantined
    assert "larger than the cap of 1,000" in q.reason and len(q.payload) <= 4096


async def test_unreadable_records_are_isolated_quarantined_and_the_run_goes_on(
    sandbox: Any, db_url: str
) -> None:
    """Pages holding a poisoned record are re-asked smaller down to that record; its raw
    bytes are quarantined; every other event is loaded exactly once."""
    clock = FakeClock()
    sb = await start(sandbox, clock, poison_events=0.0004)
    poisoned = {sb.dataset.event_id(j) for j in range(EVENTS) if sb.dataset.poisoned(j, 0.0004)}
    assert 2 <= len(poisoned) <= 30
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events"},
        pipeline={"page_size": 1000},
    )
    assert outcome.status == "succeeded"
    loaded = await loaded_ids(db_url)
    assert len(loaded) == len(set(loaded)) == EVENTS - len(poisoned)
    assert set(loaded) == set(sb.ids()) - poisoned
    rows = await query(db_url, "SELECT event_id, reason, payload_text FROM quarantine")
    assert {r["event_id"] for r in rows} == poisoned
    assert all(r["reason"].startswith("unreadable record") for r in rows)
    assert all(r["payload_text"] for r in rows)  # the raw bytes as they came
    assert outcome.counters.extra["unreadable_records"] == len(poisoned)


async def test_a_response_over_the_cap_is_refused_and_asked_again_smaller(
    sandbox: Any, db_url: str
) -> None:
    """With a response cap below a full page, pages are refused (never read whole) and the
    range is asked again in pages that fit: the load is still exact."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events"},
        pipeline={"page_size": 1000},
        http={"max_body_bytes": 150_000},
    )
    assert outcome.status == "succeeded"
    assert set(await loaded_ids(db_url)) == set(sb.ids())
    assert outcome.counters.extra["broken_pages"] > 0
