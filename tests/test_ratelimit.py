"""etl.clock and etl.ratelimit, on virtual time only: no test sleeps for real."""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable

import pytest

from etl.clock import FakeClock, MonotonicClock
from etl.models import Clock
from etl.ratelimit import SENT_ALLOWANCE, AdaptiveRate, TokenBucket

# --- clocks ------------------------------------------------------------------------------


async def test_fake_clock_wakes_concurrent_sleepers_in_deadline_order() -> None:
    """With autojump, time jumps to each deadline in turn; nobody waits for real."""
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.0))
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_fake_clock_sleeper_woken_first_may_sleep_again_before_others() -> None:
    """A woken task's new, earlier deadline is honoured before later sleepers wake."""
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def twice() -> None:
        await clock.sleep(1.0)
        await clock.sleep(1.0)
        woke.append(("twice", clock.now()))

    async def once() -> None:
        await clock.sleep(5.0)
        woke.append(("once", clock.now()))

    await asyncio.gather(once(), twice())
    assert woke == [("twice", 2.0), ("once", 5.0)]


async def test_fake_clock_without_autojump_moves_only_on_advance() -> None:
    """advance() wakes exactly the sleepers that are due."""
    clock = FakeClock(10.0, autojump=False)
    short = asyncio.create_task(clock.sleep(1.0))
    long = asyncio.create_task(clock.sleep(5.0))
    await asyncio.sleep(0)
    clock.advance(2.0)
    await asyncio.sleep(0)
    assert (short.done(), long.done(), clock.now()) == (True, False, 12.0)
    clock.advance(3.0)
    await long
    with pytest.raises(ValueError):
        clock.advance(-1.0)


async def test_fake_clock_cancelled_sleep_leaves_no_trace() -> None:
    """A cancelled sleeper is skipped and does not move time."""
    clock = FakeClock(autojump=False)
    task = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    assert clock.sleepers == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0


async def test_clocks_satisfy_the_protocol() -> None:
    """Both clocks are models.Clock; the real one's now() is monotonic."""
    clocks: list[Clock] = [MonotonicClock(), FakeClock()]
    for clock in clocks:
        before = clock.now()
        await clock.sleep(0)
        assert clock.now() >= before


# --- TokenBucket ---------------------------------------------------------------------------


async def test_bucket_spends_the_window_then_waits_for_its_end() -> None:
    """capacity tokens at once; the next one when the window (plus margin) ends."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.25)
    for _ in range(10):
        await bucket.acquire()
    assert clock.now() == 0.0
    await bucket.acquire()
    assert clock.now() == pytest.approx(60.25)
    assert bucket.tokens == 9  # a fresh window, opened by that request


@pytest.mark.parametrize(
    ("spent", "remaining", "reset_s", "tokens", "window_end"),
    [
        (1, 9, 59, 9, 59.25),  # in step with the server: its window end is adopted
        (5, 9, 59, 5, 59.25),  # stale header (4 requests in flight): never raises the budget
        (1, 3, 40, 3, 40.25),  # someone else opened the key's window earlier: fewer, sooner
        (1, 9, 2, 9, 2.25),  # the server's window is shorter than our 60 s prior
    ],
)
async def test_bucket_first_answer_sets_the_window(
    spent: int, remaining: int, reset_s: float, tokens: int, window_end: float
) -> None:
    """The first sync of a window fixes its end; the budget only ever goes down."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.25)
    for _ in range(spent):
        await bucket.acquire()
    bucket.sync(10, remaining, reset_s)
    assert (bucket.tokens, bucket.window_end) == (tokens, pytest.approx(window_end))


async def test_bucket_ignores_a_late_answer_from_the_previous_window() -> None:
    """Once the server confirmed the window, a much earlier reset is a stale answer."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.25)
    await bucket.acquire()
    bucket.sync(10, 9, 59)
    await bucket.acquire()
    bucket.sync(10, 0, 1)  # answered by the previous window, arriving late
    assert (bucket.tokens, bucket.window_end) == (8, pytest.approx(59.25))


async def test_bucket_learns_a_shorter_window_from_the_headers() -> None:
    """A server with 10 per 6 s (a sandbox at x10) is followed: no 60 s waits, no 429s."""
    clock = FakeClock()
    server = FixedWindowServer(10, 6.0)
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.25)
    rejected = 0
    for _ in range(100):
        await bucket.acquire()
        ok, remaining, reset = server.request(clock.now())
        rejected += not ok
        bucket.sync(10, remaining, reset)
    assert rejected == 0
    assert clock.now() < 9 * 6.0 * 1.1  # 100 requests = 10 windows of 6 s


async def test_bucket_sync_adopts_a_window_it_did_not_know() -> None:
    """A first sync (or a later window) sets remaining tokens now, a full refill at reset."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.0)
    bucket.sync(limit=5, remaining=2, reset_s=30)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.now() == 0.0
    await bucket.acquire()
    assert clock.now() == 30.0
    assert bucket.tokens == 4  # the server's limit (5), not our capacity (10)


async def test_bucket_pause_holds_every_waiter_at_once() -> None:
    """pause_for (a 429's Retry-After) holds all waiters even with tokens available."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    bucket.pause_for(46)
    times: list[float] = []

    async def fetcher() -> None:
        await bucket.acquire()
        times.append(clock.now())

    await asyncio.gather(*(fetcher() for _ in range(3)))
    assert times == [46.0, 46.0, 46.0]


async def test_bucket_cancelled_waiter_takes_no_token() -> None:
    """Cancelling a waiting acquire() consumes nothing; the next waiter gets the token."""
    clock = FakeClock(autojump=False)
    bucket = TokenBucket(rate_per_s=1 / 60, capacity=1, clock=clock, margin_s=0.0)
    await bucket.acquire()
    first = asyncio.create_task(bucket.acquire())
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    clock.advance(60)
    await second
    assert bucket.tokens == 0
    assert not first.done() or first.cancelled()


class FixedWindowServer:
    """The /events limiter: a fixed window per key, opened by its first request."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.start: float | None = None
        self.used = 0

    def request(self, now: float) -> tuple[bool, int, int]:
        if self.start is None or now >= self.start + self.window_s:
            self.start, self.used = now, 0
        reset = max(1, -int(-(self.start + self.window_s - now) // 1))  # ceil, like the API
        if self.used >= self.limit:
            return False, 0, reset
        self.used += 1
        return True, self.limit - self.used, reset


async def test_bucket_spends_exactly_the_fixed_window_budget() -> None:
    """Concurrent fetchers with 3.5 s latency, synced from headers: no 429, full budget."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    server = FixedWindowServer(10, 60.0)
    ok = throttled = 0
    sent = 0

    async def fetcher() -> None:
        nonlocal ok, throttled, sent
        while sent < 200:
            sent += 1
            await bucket.acquire()
            await clock.sleep(0.3)
            accepted, remaining, reset = server.request(clock.now())
            await clock.sleep(3.2)
            bucket.sync(10, remaining, reset)
            if accepted:
                ok += 1
            else:
                throttled += 1
                bucket.pause_for(reset)

    await asyncio.gather(*(fetcher() for _ in range(4)))
    assert throttled == 0
    windows = clock.now() / 60.0
    assert ok / (10 * windows) >= 0.95  # 200 requests in ~20 windows


async def test_bucket_counts_the_window_from_the_send_not_the_answer() -> None:
    """The server counted the request when it arrived: its window (6 s, a sandbox at x10)
    ends 6 s after the send, not 6 s after an answer that took 4 s."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.0)
    await bucket.acquire()
    await clock.sleep(4.0)
    bucket.sync(10, 9, 6, sent_at=0.0)
    assert bucket.window_end == pytest.approx(6.0 + bucket.sent_allowance_s)
    assert bucket.window_end < 6.2


async def test_bucket_ignores_an_answer_sent_in_a_window_gone_by() -> None:
    """An answer to a request sent before the current window's first one (pages slower
    than the window) says nothing of the current window's count or end."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.0)
    for _ in range(10):
        await bucket.acquire()
    bucket.sync(10, 0, 6, sent_at=0.0)
    await bucket.acquire()  # the window rolled at 6 s: a new one opens
    opened = clock.now()
    bucket.sync(10, 0, 6, sent_at=0.0)  # a page sent at 0 arrives now, 10 s late
    assert bucket.tokens == 9
    assert bucket.window_end == pytest.approx(opened + 6.0)


@pytest.mark.parametrize("latency_s", [0.35, 4.0, 10.0])
async def test_bucket_fills_a_fixed_window_whatever_the_pages_latency(latency_s: float) -> None:
    """10 per 6 s with pages of 0.35, 4 and 10 s (the x10 scenarios): at least 95 % of the
    windows' budget is used and nothing is refused (it was 10 per 6 s + latency before)."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    server = FixedWindowServer(10, 6.0)
    ok = throttled = 0

    async def fetcher() -> None:
        nonlocal ok, throttled
        while clock.now() < 120.0:
            await bucket.acquire()
            sent = clock.now()
            await clock.sleep(0.005)  # the way to the server's counter
            accepted, remaining, reset = server.request(clock.now())
            await clock.sleep(latency_s)
            bucket.sync(10, remaining, reset, sent_at=sent)
            if accepted:
                ok += 1
            else:
                throttled += 1
                bucket.pause_for(reset)

    await asyncio.gather(*(fetcher() for _ in range(40)))
    assert throttled == 0
    assert ok >= 0.95 * 10 * 120.0 / 6.0


async def _events_lane(
    clock: FakeClock,
    bucket: TokenBucket,
    server: FixedWindowServer,
    *,
    fetchers: int,
    until: float,
    latency_s: float,
    way_s: Callable[[int], float] = lambda k: 0.005,
    shard_wait: Callable[[int], float] = lambda k: 0.0,
) -> tuple[int, int]:
    """Fetchers doing what ``EventsLane`` does with its bucket: a token (and its ticket),
    maybe a wait for a shard, a fresh token if the window rolled meanwhile, the send, the
    server's count ``way_s(k)`` later, the answer ``latency_s`` after that (``k``: the
    fetcher's index x 1000 + its request's). (accepted, 429s)"""
    ok = throttled = 0

    async def fetcher(i: int) -> None:
        nonlocal ok, throttled
        n = 0
        while clock.now() < until:
            await bucket.acquire()
            ticket = bucket.ticket()
            k = i * 1000 + n
            n += 1
            await clock.sleep(shard_wait(k))  # e.g. no idle shard yet
            if not bucket.current(ticket):
                await bucket.acquire()
                ticket = bucket.ticket()
            sent = clock.now()
            bucket.sent(sent, ticket)
            await clock.sleep(way_s(k))
            accepted, remaining, reset = server.request(clock.now())
            await clock.sleep(latency_s if accepted else 0.01)
            bucket.sync(10, remaining, reset, sent_at=sent)
            if accepted:
                ok += 1
            else:
                throttled += 1
                bucket.pause_for(reset)

    await asyncio.gather(*(fetcher(i) for i in range(fetchers)))
    return ok, throttled


async def test_bucket_opens_the_window_at_the_first_send_not_the_grant() -> None:
    """Tokens granted at once, sent up to 3 s later (their fetchers waited for a shard), pages
    slower than the window (no answer tells its end in time): the server's window opens at
    the first request's arrival, and so must ours, or it rolls early into 429s."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    server = FixedWindowServer(10, 6.0)
    rng = random.Random(7)
    waits = [rng.uniform(0.5, 3.0) for _ in range(100_000)]
    ok, throttled = await _events_lane(
        clock,
        bucket,
        server,
        fetchers=12,
        until=120.0,
        latency_s=8.0,
        shard_wait=lambda k: waits[k % len(waits)],
    )
    assert throttled == 0
    assert ok >= 0.6 * 10 * 120.0 / 6.0


async def test_bucket_a_token_granted_before_a_roll_is_not_spent_after_it() -> None:
    """A fetcher that got its token in one window but sends in the next (it waited for a
    shard across the roll) takes a token of the window it sends in: otherwise the new window
    carries one request more than its tokens, and the server refuses it."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock, margin_s=0.0)
    await bucket.acquire()
    stale = bucket.ticket()
    bucket.sent(0.0, stale)
    bucket.sync(10, 9, 6, sent_at=0.0)
    await clock.sleep(7.0)  # the window (0, 6.12] rolled; the next token opens another
    assert not bucket.current(stale)
    await bucket.acquire()
    assert bucket.current(bucket.ticket())
    server = FixedWindowServer(10, 6.0)
    rng = random.Random(3)
    ok, throttled = await _events_lane(
        clock,
        bucket,
        server,
        fetchers=14,
        until=120.0,
        latency_s=0.35,
        shard_wait=lambda k: 6.5 if rng.random() < 0.2 else 0.0,
    )
    assert throttled == 0
    assert ok >= 0.6 * 10 * 113.0 / 6.0


async def test_bucket_allowance_grows_when_the_server_reads_requests_late() -> None:
    """A loaded machine: the server's loop stalls, and reads the requests sent together 0 to
    0.4 s after their send, a spread wider than the 2 % allowance (0.12 s of a 6 s window).
    When a window's first burst was read late and the next one early, we roll first and the
    burst is refused. That shows in the answers (the server's window ends before ours
    could): the allowance doubles, and the 429s stop instead of coming every few windows."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    server = FixedWindowServer(10, 6.0)

    def stall(k: int) -> float:  # the same for every request sent at the same moment
        return random.Random(round(clock.now() * 100)).uniform(0.0, 0.4)

    ok, throttled = await _events_lane(
        clock, bucket, server, fetchers=12, until=300.0, latency_s=0.35, way_s=stall
    )
    assert bucket.allowance > SENT_ALLOWANCE
    assert throttled <= 30
    assert ok >= 0.9 * 10 * 300.0 / 6.0


async def test_bucket_a_request_sent_as_the_servers_window_may_roll_counts_in_the_next() -> None:
    """Our window's end is padded (margin, send allowance, Resets rounded up), so it ends a
    little after the server's. A request sent in between (a busy lane whose last token goes
    late in the window) opens the server's next window: ours counts it there too, or that
    window gets one request more than the server allows."""
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10 / 60, capacity=10, clock=clock)
    server = FixedWindowServer(10, 6.0)
    answers = []
    for _ in range(9):
        await bucket.acquire()
        bucket.sent(clock.now(), bucket.ticket())
        answers.append(server.request(clock.now()))
    await clock.sleep(0.35)
    for _accepted, remaining, reset in answers:
        bucket.sync(10, remaining, reset, sent_at=0.0)
    await clock.sleep(6.03 - clock.now())  # the server's window (0, 6] is over; ours is not
    assert bucket.window_end is not None and bucket.window_end > clock.now()
    await bucket.acquire()
    bucket.sent(clock.now(), bucket.ticket())
    assert server.request(clock.now())[0]  # the first of the server's next window
    refused = 0
    for _ in range(10):
        await bucket.acquire()  # waits for our window to roll
        bucket.sent(clock.now(), bucket.ticket())
        refused += not server.request(clock.now())[0]
        if bucket.tokens == 0:
            break
    assert refused == 0


# --- AdaptiveRate --------------------------------------------------------------------------


async def test_adaptive_paces_starts_without_bursts() -> None:
    """Starts are 1/rate apart even when many wait at once."""
    clock = FakeClock()
    rate = AdaptiveRate(0.5, clock)
    starts = await asyncio.gather(*(rate.acquire() for _ in range(4)))
    assert sorted(starts) == [0.0, 2.0, 4.0, 6.0]


async def test_adaptive_increases_only_when_pacing_holds_requests_back() -> None:
    """Additive increase on success, but not while fewer requests run than the rate allows."""
    clock = FakeClock()
    rate = AdaptiveRate(0.5, clock, increase_per_s=0.01, slow_start=1.0)
    t = await rate.acquire()  # no wait: not rate-limited
    rate.on_success(t)
    assert rate.rate_per_s == 0.5
    t = await rate.acquire()  # waited for its slot
    rate.on_success(t)
    assert rate.rate_per_s == pytest.approx(0.51)


async def test_adaptive_slow_start_reaches_an_unthrottled_rate_fast() -> None:
    """With no throttle in sight the rate multiplies: 0.5/s to 50/s in a few dozen answers."""
    clock = FakeClock()
    rate = AdaptiveRate(0.5, clock, max_per_s=50.0)
    for _ in range(30):
        rate.on_success(await rate.acquire())
    assert rate.rate_per_s == 50.0


async def test_adaptive_throttle_decreases_once_pauses_and_learns_the_cap() -> None:
    """A 429 cuts the rate below the last good one, pauses everyone, remembers the cap;
    answers to requests in flight during the cut do not cut again. Learned within our first
    window, the cap is provisional and pacing falls back to the prior."""
    clock = FakeClock()
    rate = AdaptiveRate(1.0, clock, cooldown_s=5.0, window_s=100.0, prior_per_s=0.3)
    tickets = [await rate.acquire() for _ in range(10)]  # t = 0..9
    await clock.sleep(3.0)  # the answers arrive
    rate.on_throttled(tickets[8])
    assert rate.cap == 8  # starts in the window before the throttled one
    assert rate.provisional
    assert rate.rate_per_s == pytest.approx(0.3)  # max(1.05 * 8 / 100, prior)
    rate.on_throttled(tickets[9])  # started before the cut: stale
    assert rate.rate_per_s == pytest.approx(0.3)
    assert rate.throttled == 2
    assert rate.paused_until == pytest.approx(17.0)  # cooldown from t = 12
    # and the cap: 10 starts in the window, 8 allowed: wait until the 3rd (t = 2) leaves it
    assert await rate.acquire() == pytest.approx(2.0 + 100.0 + rate.margin_s)


async def test_adaptive_cancelled_waiter_takes_no_slot() -> None:
    """A cancelled acquire() leaves the pacing untouched."""
    clock = FakeClock(autojump=False)
    rate = AdaptiveRate(1.0, clock)
    await rate.acquire()
    waiter = asyncio.create_task(rate.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.advance(1.0)
    assert await rate.acquire() == 1.0


class SlidingWindowServer:
    """The feed's hidden throttle: at most ``limit`` requests in any ``window_s``."""

    def __init__(self, limit: int, window_s: float, count_refused: bool) -> None:
        self.limit, self.window_s, self.count_refused = limit, window_s, count_refused
        self.log: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        while self.log and self.log[0] <= now - self.window_s:
            self.log.popleft()
        accepted = len(self.log) < self.limit
        if accepted or self.count_refused:
            self.log.append(now)
        return accepted


@pytest.mark.parametrize(
    ("initial", "workers", "tickets", "jitter_s", "count_refused", "prefill"),
    [
        (50.0, 4, True, 0.0, False, 0),  # the pipeline's default: unpaced until a 429
        (50.0, 4, True, 0.0, True, 90),  # a previous run's requests still fill the window
        (50.0, 4, True, 0.0, True, 200),  # ... all of it (a restart right after a run)
        (0.6, 4, True, 0.0, False, 0),  # a paced start
        (0.6, 4, False, 0.0, False, 0),  # answers matched FIFO (no started_at)
        (0.3, 4, True, 1.0, False, 0),  # starting low, latency jitter
        (0.9, 8, False, 1.0, True, 0),  # starting too high; refused requests count too
        (2.0, 8, True, 2.0, False, 0),  # far too high, very jittery
    ],
)
async def test_adaptive_rate_long_run_against_a_sliding_window(
    initial: float, workers: int, tickets: bool, jitter_s: float, count_refused: bool, prefill: int
) -> None:
    """3,000 feed requests (~3.5 s latency, several in flight) against ~200 per 300 s:
    at most 0.5 % answered 429, at least 92 % of the throttle's budget used."""
    clock = FakeClock(start=300.0)
    rate = AdaptiveRate(initial, clock, prior_per_s=200 / 300)
    server = SlidingWindowServer(200, 300.0, count_refused)
    server.log.extend(300.0 - 10.0 + i * 10.0 / max(1, prefill) for i in range(prefill))
    rng = random.Random(7)
    total, sent, ok, throttled = 3000, 0, 0, 0

    async def fetcher() -> None:
        nonlocal sent, ok, throttled
        while sent < total:
            sent += 1
            ticket = await rate.acquire()
            await clock.sleep(0.5 + rng.uniform(0, jitter_s))
            accepted = server.admit(clock.now())
            # a page takes ~3 s to serve; a 429 comes from the limiter in front of it, at once
            await clock.sleep((3.0 if accepted else 0.2) + rng.uniform(0, jitter_s))
            if accepted:
                ok += 1
                rate.on_success(ticket if tickets else None)
            else:
                throttled += 1
                rate.on_throttled(ticket if tickets else None)

    await asyncio.gather(*(fetcher() for _ in range(workers)))
    budget = 200 / 300 * (clock.now() - 300.0)
    assert throttled / total <= 0.005
    assert ok / budget >= 0.92


@pytest.mark.parametrize(
    ("limit", "window_s", "workers", "latency_s"),
    [
        (20, 10.0, 8, 3.0),  # the feed: 20 per 10 s, against the spec's 300 s prior
        (200, 30.0, 16, 0.35),  # the spec's throttle, time-scaled x10, many in flight
        (200, 300.0, 16, 3.5),  # the spec's throttle itself
    ],
)
async def test_adaptive_rate_learns_the_window_as_well_as_the_cap(
    limit: int, window_s: float, workers: int, latency_s: float
) -> None:
    """With 300 s as a mere prior, the limiter finds a throttle's window from the time
    requests take to succeed again after a 429 (within a factor 2) and its rate (within
    25 %); over six windows, the back-off while it learns included, it uses ≥ 60 % of the
    throttle's budget with ≤ 1 % of requests refused, instead of pacing itself to
    ``limit`` per 300 s (3-10 % of the budget)."""
    clock = FakeClock(start=300.0)
    rate = AdaptiveRate(200 / 300, clock, prior_per_s=200 / 300, window_s=300.0, learn_window=True)
    server = SlidingWindowServer(limit, window_s, count_refused=False)
    total, sent, ok, throttled = 6 * limit * round(300 / window_s), 0, 0, 0

    async def fetcher() -> None:
        nonlocal sent, ok, throttled
        while sent < total:
            sent += 1
            ticket = await rate.acquire()
            accepted = server.admit(clock.now())
            await clock.sleep(latency_s if accepted else 0.01)
            if accepted:
                ok += 1
                rate.on_success(ticket)
            else:
                throttled += 1
                rate.on_throttled(ticket)

    await asyncio.gather(*(fetcher() for _ in range(workers)))
    budget = limit / window_s * (clock.now() - 300.0) + limit
    assert rate.window_learned and rate.cap is not None
    assert rate.cap / rate.window_s == pytest.approx(limit / window_s, rel=0.25)
    assert window_s / 2 <= rate.window_s <= 2 * window_s
    assert ok / budget >= 0.6
    assert throttled / total <= 0.01


async def test_adaptive_meets_a_possible_throttle_with_one_request_not_all_in_flight() -> None:
    """Learning the window, at the prior's cap of starts (here 10 per 10 s) one request goes
    alone and the others wait for its answer: if the throttle is there, one 429, not one
    per request in flight. Once it passed, they go on."""
    clock = FakeClock()
    rate = AdaptiveRate(50.0, clock, prior_per_s=1.0, window_s=10.0, learn_window=True)
    for _ in range(10):
        rate.on_success(await rate.acquire())
    probe = await rate.acquire()
    waiter = asyncio.ensure_future(rate.acquire())
    await clock.sleep(0.05)
    assert not waiter.done()
    rate.on_success(probe)
    assert await waiter >= probe + 0.05


async def test_once_the_window_is_learnt_waiters_go_at_once_not_at_the_next_probe() -> None:
    """Learning the window after a full prior cap of starts (10 per 10 s here, all in the
    first second): the probes come at x1.3 of the time since the oldest start; when one
    passes, the requests that waited for the next probe start at once (the slots freed
    meanwhile are caught up, pacing twice the learnt average), not a probe gap later."""
    clock = FakeClock()
    rate = AdaptiveRate(50.0, clock, prior_per_s=1.0, window_s=10.0, learn_window=True)
    first = []
    for _ in range(10):
        first.append(await rate.acquire())
        await clock.sleep(0.05)
    for t in first:
        rate.on_success(t)
    refused = await rate.acquire()  # the checkpoint: one request alone
    rate.on_throttled(refused)
    probes = [await rate.acquire()]
    assert probes[0] - first[0] == pytest.approx(1.3 * (refused - first[0]), rel=0.01)
    rate.on_throttled(probes[0])
    waiters = [asyncio.ensure_future(rate.acquire()) for _ in range(5)]
    probe = await waiters.pop(0)  # the next probe, 1.3 x further
    assert probe - first[0] == pytest.approx(1.3 * (probes[0] - first[0]), rel=0.01)
    await clock.sleep(0.2)
    rate.on_success(probe)  # it passed: the window is learnt
    assert rate.window_learned and rate.cap == 10
    starts = await asyncio.gather(*waiters)
    assert max(starts) - probe < 0.2 + 4 / (2 * rate.cap / rate.window_s) + 0.01


async def test_the_spec_throttle_time_scaled_is_learnt_with_few_429s() -> None:
    """The spec's throttle ÷10 (200 per 30 s) against its 300 s prior, 32 requests in flight
    of 1.5 s: the burst of the first window, the probes and a tentative window that moves up
    its bracket cost at most 3 refusals in 600 requests, the window is learnt within 15 %,
    and the starts a tentative (shorter) window made are still counted once it grows."""
    clock = FakeClock()
    rate = AdaptiveRate(200 / 300 * 16, clock, prior_per_s=200 / 300, learn_window=True)
    server = SlidingWindowServer(200, 30.0, count_refused=False)
    sent = refused = 0

    async def fetcher() -> None:
        nonlocal sent, refused
        while sent < 600:
            sent += 1
            ticket = await rate.acquire()
            if server.admit(clock.now()):
                await clock.sleep(1.5)
                rate.on_success(ticket)
            else:
                refused += 1
                await clock.sleep(0.01)
                rate.on_throttled(ticket)

    await asyncio.gather(*(fetcher() for _ in range(32)))
    assert refused <= 3
    assert 30.0 <= rate.window_s <= 34.5 and rate.cap == 200


async def test_a_feed_slower_than_its_throttle_is_not_held_at_every_checkpoint() -> None:
    """Pages of 5 s keep 25 fetchers at 5 starts/s, under a throttle of 200 per 30 s: the
    first checkpoint (200 starts spanning 40 s) passes, and no later one holds the lane a
    round trip (it used to at 250, 312, 390, ... starts: ~5 s idle each)."""
    clock = FakeClock()
    rate = AdaptiveRate(
        200 / 300 * 16, clock, prior_per_s=200 / 300, window_s=300.0, learn_window=True
    )
    throttle = collections.deque[float]()
    refused = accepted = 0

    async def fetcher() -> None:
        nonlocal refused, accepted
        while clock.now() < 200.0:
            started = await rate.acquire()
            while throttle and throttle[0] <= started - 30.0:
                throttle.popleft()
            if len(throttle) >= 200:
                refused += 1
                rate.on_throttled(started)
                continue
            throttle.append(started)
            accepted += 1
            await clock.sleep(5.0)
            rate.on_success(started)

    await asyncio.gather(*(fetcher() for _ in range(25)))
    assert refused == 0
    assert accepted >= 0.95 * 5 * 200
