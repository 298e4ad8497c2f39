"""The DataSync source: its ``events`` stream, the lanes (feed and/or /events), the head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import etl.ratelimit as ratelimit
from etl.errors import AuthError, BrokenPage, PermanentSourceError, SourceError, StreamTokenError
from etl.feedrate import FIRST_WINDOW_PACE
from etl.models import Clock, Lane, Position, RunCounters, ShardState, Strategy, Stream
from etl.settings import DEFAULTS, FEED_WINDOW_S
from etl.source.feed import StreamToken
from etl.source.http import Http
from etl.source.lanes import EventsLane, FeedLane, wall_ms
from etl.source.retry import RetryLog, RetryPolicy
from etl.sources import events
from etl.sources.events import REQUIRED_FIELDS
from etl.transform import EventsTransform, event_position

if TYPE_CHECKING:
    from etl.sharedrate import KeyBudget

ANCHOR_PAGE = 1000  # events read around an anchor: its second, however dense the data


@dataclass(frozen=True, slots=True)
class SourceOptions:
    strategy: Strategy = DEFAULTS.strategy
    events_concurrency: int = DEFAULTS.events_concurrency
    events_per_window: int = 10  # until the first X-RateLimit-* headers say otherwise
    events_window_s: float = 60.0
    feed_concurrency: int = DEFAULTS.feed_concurrency
    # Starting pace. None: unpaced (up to the max) until the first 429; a sliding-window
    # throttle accepts any pattern under its count, and its capacity is then learned from
    # our own request log (see ratelimit.AdaptiveRate). A paced start would cost an
    # unthrottled feed minutes for nothing.
    feed_rate_per_s: float | None = DEFAULTS.feed_rate_per_s
    feed_rate_max_per_s: float = 50.0
    feed_window_s: float = FEED_WINDOW_S  # the hidden throttle's sliding window
    feed_learn_window: bool = True  # feed_window_s is a prior: the first 429 teaches it
    max_attempts: int = DEFAULTS.max_attempts
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0


def events_stream(required: tuple[str, ...] = REQUIRED_FIELDS) -> Stream:
    """DataSync's one stream: ``events``, newest first by (timestamp, id), cut into time
    slices; an event lacking one of ``required`` (API field names) is incomplete."""
    return Stream(
        name=events.STREAM,
        columns=events.COLUMNS,
        primary_key=events.PRIMARY_KEY,
        transform=EventsTransform(required),
        split="time_range",
        boundary_slack_ms=events.BOUNDARY_SLACK_MS,
    )


EVENTS = events_stream()


class DataSyncSource:
    """Implements models.Source over one Http session."""

    stream = EVENTS

    def __init__(
        self,
        http: Http,
        clock: Clock,
        counters: RunCounters,
        options: SourceOptions,
        *,
        now_ms: Callable[[], int] = wall_ms,
        log: Callable[[str], None] | None = None,
        log_interval_s: float = 10.0,
        budget: KeyBudget | None = None,
    ) -> None:
        self._http = http
        self._budget = budget  # task mode: the key's limiters are shared (etl.sharedrate)
        self._retry_log = RetryLog(log, clock, interval_s=log_interval_s) if log else None
        self._clock = clock
        self._counters = counters
        self._options = options
        self._now_ms = now_ms
        self._lanes: list[Lane] = []
        self.strategy_used = ""

    async def start(self) -> str:
        """Choose the lanes. Returns a one-line description of the choice."""
        opts = self._options
        retry = RetryPolicy(
            max_attempts=opts.max_attempts, base_s=opts.backoff_base_s, cap_s=opts.backoff_cap_s
        )
        common = {"retry": retry, "now_ms": self._now_ms, "retry_log": self._retry_log}
        lanes: list[Lane] = []
        note = ""
        if opts.strategy in ("auto", "feed"):
            token = StreamToken(self._http, self._clock)
            try:
                await token.get()
            except (StreamTokenError, AuthError) as exc:
                if opts.strategy == "feed" or isinstance(exc, AuthError):
                    raise
                note = f"feed unavailable ({exc}); "
            except SourceError as exc:
                if opts.strategy == "feed":
                    raise
                note = f"feed unavailable ({exc}); "
            else:
                prior = 200 / opts.feed_window_s  # the spec: ~200 per window
                # Learning the window, 16 x the prior's pace until the first 429: the
                # throttle's empty window is used, not wasted at the prior's pace, and the
                # throttle is met with one request (at the prior's cap of starts, one goes
                # alone: AdaptiveRate.acquire). A window given: unpaced until then.
                start = prior * FIRST_WINDOW_PACE if opts.feed_learn_window else None
                rate = ratelimit.AdaptiveRate(
                    initial_per_s=opts.feed_rate_per_s or start or opts.feed_rate_max_per_s,
                    max_per_s=opts.feed_rate_max_per_s,
                    window_s=opts.feed_window_s,
                    prior_per_s=prior,
                    learn_window=opts.feed_learn_window,
                    clock=self._clock,
                )
                if self._budget is not None:
                    rate = self._budget.feed(rate)
                lanes.append(
                    FeedLane(
                        self._http,
                        self._clock,
                        self._counters,
                        concurrency=opts.feed_concurrency,
                        token=token,
                        rate=rate,
                        **common,
                    )
                )
        if opts.strategy in ("auto", "events"):
            bucket = ratelimit.TokenBucket(
                rate_per_s=opts.events_per_window / opts.events_window_s,
                capacity=opts.events_per_window,
                clock=self._clock,
            )
            if self._budget is not None:
                bucket = self._budget.events(bucket)
            lanes.append(
                EventsLane(
                    self._http,
                    self._clock,
                    self._counters,
                    concurrency=opts.events_concurrency,
                    bucket=bucket,
                    **common,
                )
            )
        self._lanes = lanes
        self.strategy_used = "+".join(lane.name for lane in lanes)
        shared = f"; {self._budget.describe()}" if self._budget is not None else ""
        return f"{note}fetching through {self.strategy_used}{shared}"

    def lanes(self) -> list[Lane]:
        return list(self._lanes)

    async def contains(self, anchor: Position) -> bool:
        """One request: the events within a second of ``anchor`` include its id."""
        lane = self._lanes[0]
        ticket = await lane.acquire()
        around = ShardState("anchor", lower_ts=anchor.ts_ms - 1000, upper_ts=anchor.ts_ms + 999)
        page = await lane.fetch(around, ANCHOR_PAGE, ticket=ticket)
        for event in page.events:
            seen = event_position(event)
            if seen is not None and seen.id == anchor.id and abs(seen.ts_ms - anchor.ts_ms) < 1000:
                return True
        return False

    async def head(self) -> tuple[Position | None, int | None]:
        lane = self._lanes[0]
        ticket = await lane.acquire()
        probe = ShardState(shard_id="head", lower_ts=None, upper_ts=None)
        try:
            page = await lane.fetch(probe, 1, ticket=ticket)
        except BrokenPage as exc:
            if exc.after is None:
                raise
            # the newest event cannot be read, but where it stands can: the shards start
            # above it and the record is isolated like any other unreadable one
            return Position(exc.after[0] + 999, exc.after[1]), None
        if not page.events:
            return None, page.total
        if page.cursor_position is not None:  # exact, even if the event itself is invalid
            return page.cursor_position, page.total
        position = event_position(page.events[0])
        if position is None:
            raise PermanentSourceError(
                "cannot tell where the stream starts: the newest event has no usable "
                "timestamp and the API sent no readable cursor"
            )
        # a timestamp in whole seconds reads up to 999 ms early: start just above it
        return Position(position.ts_ms + 999, position.id), page.total
