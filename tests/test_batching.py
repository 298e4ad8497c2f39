"""etl.batching: a page moves its shard to the position its checkpoint will commit."""

from __future__ import annotations

from etl.batching import advance as advance_stream
from etl.batching import merge
from etl.models import Batch, Checkpoint, Page, Position, ShardState
from etl.source.datasync import events_stream
from etl.sources.events import BOUNDARY_SLACK_MS, RawEvent

T = 1_769_541_612_369
STREAM = events_stream(required=())  # nothing beyond a valid id and time


def advance(shard: ShardState, page: Page) -> Batch:
    return advance_stream(STREAM, shard, page)


def ev(n: int, ts: int) -> RawEvent:
    return RawEvent(id=f"00000000-0000-4000-8000-{n:012x}", type="click", timestamp=ts)


def test_a_middle_page_keeps_the_shard_running_at_the_cursor() -> None:
    """A page with more to come keeps its in-range rows and leaves the shard running at the API's
    next cursor, positioned on its last event."""
    shard = ShardState("s", lower_ts=T - 100_000, upper_ts=T)
    page = Page([ev(1, T - 10), ev(2, T - 20)], has_more=True, next_cursor="c2")
    batch = advance(shard, page)
    assert [r[0] for r in batch.records] == [ev(1, 0).id, ev(2, 0).id]
    assert (shard.status, shard.cursor, shard.position) == (
        "running",
        "c2",
        Position(T - 20, ev(2, 0).id),
    )
    assert batch.checkpoint.done is False and batch.checkpoint.cursor == "c2"
    assert batch.received == 2


def test_the_cursor_position_wins_over_the_last_event() -> None:
    # whole-second timestamps read early: the API's cursor names the exact millisecond
    """The position the API's cursor names (exact to the ms) is the checkpoint, not the last
    event's own (maybe rounded) time."""
    shard = ShardState("s", lower_ts=None, upper_ts=None)
    exact = Position(T - 19, ev(2, 0).id)
    advance(shard, Page([ev(1, T - 10), ev(2, T - 20)], True, "c", cursor_position=exact))
    assert shard.position == exact


def test_reaching_below_the_lower_bound_ends_the_shard_after_the_slack() -> None:
    """Events within a second below the lower bound are re-read slack and keep the shard going; one
    past the slack ends it."""
    lower = T - 1_000_000
    shard = ShardState("s", lower_ts=lower, upper_ts=T)
    inside_slack = lower - BOUNDARY_SLACK_MS + 1  # re-read, kept by neither bound check
    page = Page([ev(1, lower + 5), ev(2, inside_slack)], has_more=True, next_cursor="c")
    assert advance(shard, page).checkpoint.done is False
    below = Page([ev(3, lower - BOUNDARY_SLACK_MS)], has_more=True, next_cursor="c")
    batch = advance(shard, below)
    assert batch.checkpoint.done and shard.status == "done" and shard.cursor is None
    assert batch.records == []  # owned by the next shard


def test_an_empty_last_page_ends_the_shard_and_keeps_its_position() -> None:
    """An empty final page ends the shard without losing the position already committed."""
    shard = ShardState("s", None, T, position=Position(T - 5, ev(9, 0).id), cursor="c")
    batch = advance(shard, Page([], has_more=False, next_cursor=None))
    assert (shard.status, shard.cursor, shard.position) == (
        "done",
        None,
        Position(T - 5, ev(9, 0).id),
    )
    assert batch.checkpoint.position == shard.position


def test_merge_sums_pages_and_keeps_the_last_checkpoint() -> None:
    """Merged pages of one shard are one transaction: their rows in order, the pages summed, the
    last checkpoint kept; one page merges to itself."""
    shard = ShardState("s", None, None)
    a = advance(shard, Page([ev(1, T - 1)], True, "c1"))
    b = advance(shard, Page([ev(2, T - 2)], False, None))
    m = merge([a, b])
    assert [r[0] for r in m.records] == [ev(1, 0).id, ev(2, 0).id]
    assert m.checkpoint == Checkpoint("s", b.checkpoint.position, None, True, 2)
    assert m.received == 2
    assert merge([a]) is a


def test_pages_record_the_density_the_shard_is_read_at() -> None:
    """Each page that leaves the shard running adds its in-range events and the time they
    span (the splitter cuts at a page's end by it); the last page adds nothing."""
    shard = ShardState("s", lower_ts=T - 100_000, upper_ts=T)
    advance(shard, Page([ev(1, T - 10), ev(2, T - 20)], has_more=True, next_cursor="c2"))
    advance(shard, Page([ev(3, T - 30), ev(4, T - 40)], has_more=True, next_cursor="c3"))
    assert (shard.fetched, shard.fetched_ms) == (4, 40)
    advance(shard, Page([ev(5, T - 50), ev(6, T - 200_000)], has_more=True, next_cursor="c4"))
    assert shard.status == "done" and (shard.fetched, shard.fetched_ms) == (4, 40)
