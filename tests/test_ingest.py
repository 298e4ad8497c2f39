"""End-to-end ingest: real sandbox over loopback, real PostgreSQL, virtual time."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest

from etl.clock import FakeClock
from tests.ingest_harness import LinkedClock, Recorder, ingest, loaded_ids, query

EVENTS = 20_000


async def start(sandbox: Any, clock: FakeClock, **knobs: Any) -> Any:
    return await sandbox(events=knobs.pop("events", EVENTS), clock=LinkedClock(clock), **knobs)


def assert_exact(loaded: list[str], expected: list[str]) -> None:
    dupes = [i for i, n in Counter(loaded).items() if n > 1]
    assert not dupes
    missing = set(expected) - set(loaded)
    extra = set(loaded) - set(expected)
    assert not missing and not extra, (len(missing), len(extra))


@pytest.mark.parametrize("strategy", ["auto", "events", "feed"])
async def test_full_run_loads_exactly_the_dataset(sandbox: Any, db_url: str, strategy: str) -> None:
    """Every id of the dataset lands once, through each strategy, within the real limits."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": strategy})
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert outcome.counters.inserted == EVENTS
    assert sb.stats.rate_limited.get("events", 0) <= 1


async def test_feed_teapot_for_a_shard_below_the_data_is_asked_again_without_since(
    sandbox: Any, db_url: str
) -> None:
    """418 ("outside the data range") on the oldest shards' ``since``: the feed is asked again
    without it, and the run is still exact (the shard's bounds filter the pages)."""
    clock = FakeClock()
    sb = await start(sandbox, clock, feed_teapot=True)
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "feed"})
    assert outcome.status == "succeeded", outcome.error
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert sb.stats.statuses["feed", 418] >= 1


async def test_a_feed_that_goes_down_is_retired_and_events_finishes_the_run(
    sandbox: Any, db_url: str
) -> None:
    """Both lanes run; the feed answers 503 for good after 3 pages: its fetchers give up
    after their retries, the lane is retired with a message, /events loads the rest."""
    clock = FakeClock()
    sb = await start(sandbox, clock, feed_down_after=3)
    rec = Recorder()
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "auto"},
        pipeline={"page_size": 500},
        reporter=rec,
    )
    assert outcome.status == "succeeded", outcome.error
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert outcome.counters.extra["lanes_retired"] == 1
    assert any("feed lane failed" in m for m in rec.messages), rec.messages
    assert sb.stats.statuses["feed", 200] == 3
    assert sb.stats.statuses["feed", 503] >= 1


async def test_pages_fetched_but_not_written_stay_within_the_bound(
    sandbox: Any, db_url: str
) -> None:
    """Six fetchers, one loader: at most ``max_pages`` pages are ever held in memory between
    their fetch and their commit (fetchers wait for a credit, not with a page in hand)."""
    clock = FakeClock()
    sb = await start(sandbox, clock, unlimited=True)
    rec = Recorder()
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        pipeline={"page_size": 500, "loaders": 1, "max_pages": 3},
        reporter=rec,
    )
    assert outcome.status == "succeeded", outcome.error
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert max(rec.pages_held) == 3  # the loader is the bottleneck: the bound is reached


async def test_rows_hold_the_normalised_content(sandbox: Any, db_url: str) -> None:
    """Columns carry what the API sent: UTC instant, raw timestamp, properties, session."""
    clock = FakeClock()
    sb = await start(sandbox, clock, timestamp_formats="mixed")
    await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"})
    rows = {
        r["id"]: r
        for r in await query(
            db_url,
            "SELECT id::text AS id, session_id::text AS sid, user_id::text AS uid, type, name,"
            " occurred_at, properties::text AS props, session::text AS sess, timestamp_raw"
            " FROM events",
        )
    }
    assert len(rows) == EVENTS
    raw_formats = set()
    for p in range(0, EVENTS, 97):
        truth = sb.dataset.event(p)
        row = rows[truth["id"]]
        expected = dt.datetime.fromtimestamp(truth["timestamp"] / 1000, dt.UTC)
        # epoch seconds and RFC 2822 carry whole seconds only
        assert abs((row["occurred_at"] - expected).total_seconds()) < 1.0
        assert row["occurred_at"].utcoffset() == dt.timedelta(0)
        assert (row["sid"], row["uid"], row["type"], row["name"]) == (
            truth["sessionId"],
            truth["userId"],
            truth["type"],
            truth["name"],
        )
        assert json.loads(row["props"]) == truth["properties"]
        assert json.loads(row["sess"])["id"] == truth["sessionId"]
        raw_formats.add(row["timestamp_raw"][:2].isdigit())
    assert raw_formats == {True, False}  # both numbers and strings were received


async def test_stopped_run_resumes_without_loss_or_duplicates(sandbox: Any, db_url: str) -> None:
    """A run stopped midway ends partial; the next one finishes from the checkpoints."""
    clock = FakeClock()
    sb = await start(sandbox, clock)
    rec = Recorder(stop_after_batches=3)
    first = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events"},
        pipeline={"page_size": 500},
        reporter=rec,
    )
    assert first.status == "partial", (first.counters, rec.updates, first.reason)
    part = await loaded_ids(db_url)
    assert 0 < len(part) < EVENTS
    second = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events"},
        pipeline={"page_size": 500},
    )
    assert second.status == "succeeded", second.error
    assert_exact(await loaded_ids(db_url), sb.ids())
    # re-fetched at most about one page per shard
    assert second.counters.duplicates <= 6 * 500


async def test_expired_cursors_are_rebuilt_not_restarted(sandbox: Any, db_url: str) -> None:
    """CURSOR_EXPIRED re-anchors at the last position; nothing is missed or re-read whole."""
    clock = FakeClock()
    sb = await start(sandbox, clock, cursor_ttl=5)
    # the client's clock runs 1 h late, so it thinks every cursor is fresh: the API disagrees
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        client_skew_s=-3600,
        source={"strategy": "events"},
        pipeline={"page_size": 1000},
    )
    assert outcome.status == "succeeded"
    assert outcome.counters.cursor_resets > 0
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert outcome.counters.duplicates < 200


async def test_429_retry_after_is_honoured(sandbox: Any, db_url: str) -> None:
    """A window already spent elsewhere costs one 429 and a wait, not a storm of retries."""
    clock = FakeClock()
    sb = await start(sandbox, clock, rate_limit=3)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        for _ in range(3):  # another client of the same key spends the whole window
            async with http.get(sb.base_url + "/events", params={"limit": "1"}) as resp:
                assert resp.status == 200
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        source={"strategy": "events", "events_concurrency": 3},
        pipeline={"page_size": 2000},
    )
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert 1 <= sb.stats.rate_limited.get("events", 0) <= 3
    assert outcome.counters.rate_limited == sb.stats.rate_limited["events"]


async def test_faults_are_retried_to_an_exact_result(sandbox: Any, db_url: str) -> None:
    """5xx pages, truncated JSON and dropped connections are retried; the set is exact."""
    clock = FakeClock()
    sb = await start(
        sandbox,
        clock,
        p_500=0.05,
        p_502=0.05,
        p_503=0.05,
        p_504=0.05,
        p_truncate=0.08,
        p_drop=0.08,
        fault_seed=7,
    )
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, pipeline={"page_size": 1000})
    assert outcome.status == "succeeded"
    assert outcome.counters.retries > 0
    assert_exact(await loaded_ids(db_url), sb.ids())


async def test_invalid_events_are_quarantined_and_the_run_goes_on(
    sandbox: Any, db_url: str
) -> None:
    """Bad events land in quarantine with a reason; every valid event is loaded."""
    clock = FakeClock()
    share = 0.01
    sb = await start(sandbox, clock, invalid_events=share)
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"})
    assert outcome.status == "succeeded"
    bad = [j for j in range(EVENTS) if sb.dataset.invalid(j, share)]
    assert bad
    rows = await query(db_url, "SELECT reason, event_id FROM quarantine")
    assert len(rows) == len(bad)
    assert {r["reason"].split(":")[0] for r in rows} >= {"missing id"}
    loaded = set(await loaded_ids(db_url))
    valid = {i for i in sb.ids() if i in loaded}
    assert len(loaded) == EVENTS - len(bad) == len(valid)


async def test_second_run_is_incremental(sandbox: Any, db_url: str) -> None:
    """After a full sync, new events at the head are fetched and the old ones are not."""
    clock = FakeClock()
    sb = await start(sandbox, clock, live_rate=5)
    first = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"})
    assert first.status == "succeeded"
    clock.advance(600)  # ~3,000 new events appear at the head (more while the first run ran)
    before = set(sb.dataset.ids(sb.live()))
    second = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"})
    assert second.status == "succeeded"
    assert "incremental" in second.planned
    # the new events and at most one page more, not the whole dataset again (how many are new
    # depends on the run's virtual time: the sandbox's latency runs on the same clock)
    assert second.counters.received <= second.counters.inserted + 5000
    assert second.counters.received < len(before)
    loaded = await loaded_ids(db_url)
    assert len(loaded) == len(set(loaded))
    # everything there when the run started is loaded; what arrived during it may be too
    assert before <= set(loaded) <= set(sb.ids())


async def test_data_older_than_the_plan_is_split_across_idle_fetchers(
    sandbox: Any, db_url: str
) -> None:
    """A wrong guess of the data's age piles events into the open tail; idle fetchers split
    it (no gap, no overlap at the new boundaries) instead of waiting on one cursor chain."""
    clock = FakeClock()
    sb = await start(sandbox, clock, unlimited=True)
    outcome = await ingest(
        sb.base_url,
        sb.api_key,
        db_url,
        clock,
        pipeline={"span_ms": 2 * 86_400_000, "shards": 3, "page_size": 500},
    )
    assert outcome.status == "succeeded"
    assert outcome.counters.extra.get("splits", 0) >= 1
    assert_exact(await loaded_ids(db_url), sb.ids())
    assert outcome.counters.duplicates < 0.05 * EVENTS
    rows = await query(db_url, "SELECT count(*) AS n FROM ingest_progress WHERE status='done'")
    assert rows[0]["n"] == len(outcome.shards)


async def test_whole_second_timestamps_at_shard_boundaries_lose_nothing(
    sandbox: Any, db_url: str
) -> None:
    """Epoch seconds and RFC 2822 read up to 999 ms early; many boundaries, no event lost."""
    clock = FakeClock()
    sb = await start(sandbox, clock, timestamp_formats="mixed", unlimited=True)
    outcome = await ingest(
        sb.base_url, sb.api_key, db_url, clock, pipeline={"shards": 40, "page_size": 250}
    )
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())


async def test_an_invalid_newest_event_does_not_hide_the_stream(sandbox: Any, db_url: str) -> None:
    """With every event invalid, the head still comes from the API's cursor: all are read and
    quarantined, none silently skipped as "the API has no events"."""
    clock = FakeClock()
    sb = await start(sandbox, clock, events=2_000, invalid_events=1.0)
    outcome = await ingest(sb.base_url, sb.api_key, db_url, clock, source={"strategy": "events"})
    assert outcome.status == "succeeded"
    assert "no events" not in outcome.planned
    rows = await query(db_url, "SELECT sum(occurrences) AS n, count(*) AS rows FROM quarantine")
    assert rows[0]["rows"] == 2_000


async def test_a_feed_that_barely_serves_does_not_hold_the_run_back(
    sandbox: Any, db_url: str
) -> None:
    """A feed throttled to 2 requests per window: /events carries the run; the set is exact."""
    clock = FakeClock()
    sb = await start(sandbox, clock, events=5_000, feed_throttle=2)
    outcome = await ingest(
        sb.base_url, sb.api_key, db_url, clock, pipeline={"page_size": 500, "shards": 8}
    )
    assert outcome.status == "succeeded"
    assert_exact(await loaded_ids(db_url), sb.ids())
    # pages served, not requests: the feed's refused probes (learning its window) are 429s
    assert sb.stats.statuses["events", 200] > sb.stats.statuses["feed", 200]
