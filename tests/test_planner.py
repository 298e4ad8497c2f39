"""Shard planning: slices cover the stream with no gap and no overlap."""

from __future__ import annotations

import random

import pytest

from etl import planner
from etl.models import Position, ShardState


def owner(shards: list[ShardState], ts: int) -> list[str]:
    return [
        s.shard_id
        for s in shards
        if (s.lower_ts is None or s.lower_ts < ts) and (s.upper_ts is None or ts <= s.upper_ts)
    ]


def test_full_plan_gives_every_timestamp_exactly_one_shard() -> None:
    """Every timestamp up to the head, boundaries and far past included, has one owner."""
    head = Position(1_769_541_612_369, "f" * 8)
    shards = planner.full_plan(head, shards=7, span_ms=30 * planner.DAY_MS)
    assert len(shards) == 7
    rng = random.Random(1)
    probes = [s.lower_ts for s in shards if s.lower_ts is not None]
    probes += [b + d for b in probes for d in (-1, 1)]
    probes += [head.ts_ms, head.ts_ms - 40 * planner.DAY_MS, 0]
    probes += [rng.randrange(head.ts_ms - 31 * planner.DAY_MS, head.ts_ms) for _ in range(500)]
    for ts in probes:
        assert len(owner(shards, ts)) == 1, ts
    assert owner(shards, head.ts_ms + 1) == []


def test_covered_upper_only_when_all_done() -> None:
    """An unfinished shard means the sync is not complete: no incremental yet."""
    shards = planner.full_plan(Position(10_000_000), shards=3, span_ms=1_000_000)
    assert planner.covered_upper(shards) is None
    for s in shards:
        s.status = "done"
    assert planner.covered_upper(shards) == 10_000_000


def test_incremental_plan_starts_just_below_the_last_head() -> None:
    """New events above the old head are planned, with a small overlap under it."""
    new = planner.incremental_plan(
        5_000_000,
        Position(5_600_000),
        overlap_ms=1_000,
        shards=4,
        events_per_ms=1.0,
        events_per_shard=100_000,
    )
    assert len(new) == 4
    assert new[0].upper_ts == 5_600_000
    assert new[-1].lower_ts == 4_999_000
    for ts in (4_999_001, 5_000_000, 5_300_000, 5_600_000):
        assert len(owner(new, ts)) == 1
    assert planner.incremental_plan(5_000_000, Position(5_000_000), overlap_ms=0) == []


def test_split_hands_the_older_half_to_a_new_shard() -> None:
    """Splitting keeps coverage exact: the two halves meet at one boundary."""
    shard = ShardState("a", lower_ts=0, upper_ts=1_000_000, position=Position(800_000))
    new = planner.split(shard)
    assert new is not None
    assert shard.lower_ts == 0  # unchanged until the caller has persisted the split
    shard.lower_ts = new.upper_ts
    assert new.upper_ts == 400_000
    assert new.lower_ts == 0
    for ts in (1, 399_999, 400_000, 400_001, 800_000):
        assert len(owner([shard, new], ts)) == 1


def test_open_tail_splits_at_as_much_time_again() -> None:
    """The tail keeps as much time as it has covered; the rest goes to a new open tail."""
    tail = ShardState("t", lower_ts=None, upper_ts=1_000, position=Position(600))
    new = planner.split(tail)
    assert new is not None and new.lower_ts is None
    assert new.upper_ts == 200


def test_remaining_events_from_the_shards_own_density() -> None:
    """A shard that read 100 events over 1,000 ms with 3,000 ms left has ~300 to go."""
    s = ShardState("a", lower_ts=0, upper_ts=4_000, position=Position(3_000), events=100)
    assert planner.remaining_events(s) == 300
    assert planner.remaining_events(ShardState("b", 0, 10)) is None


def test_small_increment_gets_one_shard() -> None:
    """A few new events are not worth several requests of a 10-per-minute budget."""
    new = planner.incremental_plan(
        5_000_000, Position(5_600_000), overlap_ms=0, shards=16, events_per_ms=0.01
    )
    assert len(new) == 1


def test_a_split_cuts_where_the_kept_part_ends_with_a_nearly_full_page() -> None:
    """A busy shard read at 0.1 events/ms keeps a whole number of 5,000-event pages (less a
    margin for the estimate), so its last page is not half empty: a budget counts requests."""
    shard = ShardState("a", lower_ts=0, upper_ts=1_300_000, position=Position(800_000))
    shard.fetched, shard.fetched_ms = 50_000, 500_000
    new = planner.split(shard, page_size=5_000)
    assert new is not None and new.lower_ts == 0
    assert new.upper_ts is not None
    kept = (800_000 - new.upper_ts) * 0.1  # events in (cut, current] at that density
    assert 7.75 * 5_000 <= kept < 8 * 5_000  # 8 pages, the last one at least 3/4 full
    shard.lower_ts = new.upper_ts
    for ts in (1, new.upper_ts, new.upper_ts + 1, 800_000):
        assert len(owner([shard, new], ts)) == 1


def test_a_split_halves_the_time_while_the_density_is_unknown() -> None:
    """Less than a page read this run: no density to cut by, the range is halved."""
    shard = ShardState("a", lower_ts=0, upper_ts=1_000_000, position=Position(800_000))
    shard.fetched, shard.fetched_ms = 4_000, 200_000
    new = planner.split(shard, page_size=5_000)
    assert new is not None and new.upper_ts == 400_000


def test_a_shard_split_off_counts_by_the_density_it_was_cut_at() -> None:
    """Before its first page, a shard split off a busy one has the busy one's density: its
    events to go can be told (the splitter can choose it), and it splits again at a page's
    end, not at its middle."""
    shard = ShardState("a", lower_ts=0, upper_ts=1_300_000, position=Position(800_000))
    shard.fetched, shard.fetched_ms = 50_000, 500_000
    new = planner.split(shard, page_size=5_000)
    assert new is not None and new.upper_ts is not None
    assert planner.remaining_events(new) == pytest.approx(new.upper_ts * 0.1)
    again = planner.split(new, page_size=5_000)
    assert again is not None and again.upper_ts is not None
    kept = (new.upper_ts - again.upper_ts) * 0.1
    assert 3.75 * 5_000 <= kept < 4 * 5_000  # 4 whole pages, the last one nearly full


def test_a_split_that_would_cost_a_request_is_refused_when_asked_for_a_free_one() -> None:
    """16 pages to go exactly: any page-aligned cut pushes the margin into the new part,
    which then needs one page more (17 requests for 16 pages): not free. 15.5 pages: the
    new part's last page is half full either way, the split is free."""
    exact = ShardState("a", lower_ts=0, upper_ts=1_300_000, position=Position(800_000))
    exact.fetched, exact.fetched_ms = 50_000, 500_000
    assert planner.split(exact, page_size=5_000, free=True) is None
    assert planner.split(exact, page_size=5_000) is not None
    half = ShardState("b", lower_ts=25_000, upper_ts=1_300_000, position=Position(800_000))
    half.fetched, half.fetched_ms = 50_000, 500_000
    assert planner.split(half, page_size=5_000, free=True) is not None


def test_less_than_a_page_to_go_is_not_split() -> None:
    """A shard whose page in flight covers what it has left: halving it would only add a
    request."""
    shard = ShardState("a", lower_ts=760_000, upper_ts=1_300_000, position=Position(800_000))
    shard.fetched, shard.fetched_ms = 50_000, 500_000
    assert planner.split(shard, page_size=5_000) is None
