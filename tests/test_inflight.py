"""The in-flight limit a lane finds by itself (etl.inflight), in virtual time.

The far side is the sandbox's own model of a server whose latency grows with the pages in
flight (``etl.sandbox.capacity``), in front of it a budget (``TokenBucket``).
"""

from __future__ import annotations

import asyncio

import pytest

from etl.clock import FakeClock
from etl.inflight import InFlight
from etl.ratelimit import TokenBucket
from etl.sandbox import SandboxConfig
from etl.sandbox.capacity import PAGE_EVENTS, SharedCapacity


async def run_lane(
    *, budget_per_s: float | None, latency_s: float, capacity: float, seconds: float
) -> tuple[InFlight, float]:
    """Fetchers through an InFlight limit against the modelled server; (limit, pages/s)."""
    clock = FakeClock()
    server = SharedCapacity(SandboxConfig(events=1, latency_per_page=latency_s, capacity=capacity))
    bucket = (
        None
        if budget_per_s is None
        else TokenBucket(budget_per_s, max(1.0, budget_per_s), clock)  # a 1 s fixed window
    )
    slots = InFlight(
        clock,
        initial=2,
        maximum=200,
        budget_ready=(lambda: True) if bucket is None else bucket.ready,
    )
    done = 0
    measured_from = seconds / 2

    async def fetcher() -> None:
        nonlocal done
        while clock.now() < seconds:
            await slots.acquire()
            try:
                if bucket is not None:
                    await bucket.acquire()
                sent = slots.sent()
                await server.hold(PAGE_EVENTS, clock.sleep)
                slots.answered(sent)
                if clock.now() >= measured_from:
                    done += 1
            finally:
                slots.release()

    await asyncio.gather(*(fetcher() for _ in range(slots.maximum)))
    return slots, done / (seconds - measured_from)


async def test_a_lane_held_back_by_its_limit_grows_to_fill_the_budget() -> None:
    """Budget 0.5 page/s, pages of 3.5 s that slow down as more are in flight (the spec's
    server): the lane finds the ~5 in flight that spend the whole budget (Little's law:
    0.5/s x ~10 s), instead of the 2 it started with, and stops there."""
    slots, rate = await run_lane(budget_per_s=0.5, latency_s=3.5, capacity=5500, seconds=600)
    assert rate >= 0.95 * 0.5
    assert 4 <= slots.peak <= 8
    assert slots.limit <= 10  # held back by the budget: no further growth


async def test_a_slow_server_gets_more_in_flight_not_less() -> None:
    """6 s pages (the spec's upper end): the same budget needs ~23 in flight, and gets them."""
    slots, rate = await run_lane(budget_per_s=0.5, latency_s=6.0, capacity=5500, seconds=900)
    assert rate >= 0.95 * 0.5
    assert 20 <= slots.peak <= 32


async def test_a_saturated_server_is_not_flooded() -> None:
    """No budget at all, a server capped at 2 pages/s whatever is in flight (latency only
    grows): the lane backs off instead of climbing to its maximum of 200."""
    slots, rate = await run_lane(budget_per_s=None, latency_s=0.5, capacity=10_000, seconds=600)
    assert rate == pytest.approx(2.0, rel=0.4)
    assert slots.backed_off >= 1
    assert slots.limit < 100


async def test_a_429_backs_off_and_a_waiter_taking_no_slot_is_safe() -> None:
    """A 429 cuts the limit by a quarter; a cancelled waiter leaves every slot free."""
    clock = FakeClock()
    slots = InFlight(clock, initial=8, maximum=16)
    for _ in range(8):
        await slots.acquire()
    waiter = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.answered(slots.sent(), throttled=True)
    assert slots.limit == 6
    for _ in range(8):
        slots.release()
    assert slots.held == 0


async def test_answers_near_the_request_timeout_stop_the_growth() -> None:
    """No budget, a server whose latency only grows with what is in flight: once answers
    take longer than half the request timeout the lane stops adding requests (they would
    time out and be retried), instead of climbing to its maximum."""
    clock = FakeClock()
    server = SharedCapacity(SandboxConfig(events=1, latency_per_page=3.5, capacity=5500))
    slots = InFlight(clock, initial=2, maximum=200, max_latency_s=30.0)

    async def fetcher() -> None:
        while clock.now() < 1800:
            await slots.acquire()
            try:
                sent = slots.sent()
                await server.hold(PAGE_EVENTS, clock.sleep)
                slots.answered(sent)
            finally:
                slots.release()

    await asyncio.gather(*(fetcher() for _ in range(slots.maximum)))
    # 3.5 s x n^0.65 reaches 30 s at n ~ 27; at the cap (5.5k ev/s) n x 0.91 s at n ~ 33
    assert slots.limit <= 40
    assert slots.peak <= 60
