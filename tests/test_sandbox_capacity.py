"""Pages in flight share the server's capacity: the throughput the spec records per worker count."""

from __future__ import annotations

import heapq

import aiohttp
import pytest

from etl.clock import FakeClock as VirtualClock
from etl.sandbox import FakeClock, SandboxConfig
from etl.sandbox.capacity import PAGE_EVENTS, SharedCapacity
from tests.fixtures_sandbox import SandboxFactory, fetch
from tests.ingest_harness import LinkedClock

# datasync-api.md §6: workers -> events/s (3.5 s pages; "capped at ~5-6K regardless")
RECORDED = {1: 1_400, 5: 2_500, 10: 3_125, 20: 4_184}


def closed_loop(config: SandboxConfig, workers: int, pages: int = 600) -> float:
    """Events/s served to ``workers`` that each ask for the next page as soon as one arrives,
    in the sandbox's time (its ``FakeClock``, moved from one page's end to the next)."""
    clock = FakeClock(start=0.0)
    capacity = SharedCapacity(config)
    due: list[tuple[float, int]] = []
    for w in range(workers):
        heapq.heappush(due, (clock.time() + capacity.admit(PAGE_EVENTS), w))
    done, start = 0, 0.0
    while done < pages:
        at, w = heapq.heappop(due)
        clock.advance(at - clock.time())
        capacity.leave()
        done += 1
        if done == workers:  # the first round is a transient: measure from here
            start = clock.time()
        heapq.heappush(due, (clock.time() + capacity.admit(PAGE_EVENTS), w))
    return (done - workers) * PAGE_EVENTS / (clock.time() - start)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_throughput_grows_sub_linearly_with_workers_as_recorded(scale: float) -> None:
    """3.5 s pages: 1/5/10/20 closed-loop workers get the spec's ev/s within 5 % (x10 when the
    sandbox runs ten times faster), and no number of workers gets more than the cap."""
    config = SandboxConfig(events=1, latency_per_page=3.5, time_scale=scale)
    for workers, recorded in RECORDED.items():
        got = closed_loop(config, workers) / scale
        assert got == pytest.approx(recorded, rel=0.05), workers
    assert closed_loop(config, 200) / scale == pytest.approx(config.capacity, rel=0.01)


def test_capacity_zero_is_a_constant_latency() -> None:
    """Without sharing every page takes the base latency: n workers get n times one's rate."""
    config = SandboxConfig(events=1, latency_per_page=2.0, capacity=0)
    assert closed_loop(config, 1) == pytest.approx(2_500)
    assert closed_loop(config, 20) == pytest.approx(50_000)


async def test_a_page_alone_takes_the_base_latency_over_http(sandbox: SandboxFactory) -> None:
    """Served for real over loopback, a lone 5000-event page takes latency_per_page (scaled)
    on the sandbox's clock, and leaves nothing in flight."""
    client = VirtualClock()
    sb = await sandbox(latency_per_page=3.5, time_scale=10, clock=LinkedClock(client))
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        t0 = client.now()
        r = await fetch(http, "GET", sb.base_url + "/events", params={"limit": "5000"})
        elapsed = client.now() - t0
    assert r.status == 200 and len(r.json()["data"]) == 5000
    assert elapsed == pytest.approx(0.35, abs=0.01)
    assert sb.state.capacity.in_flight == 0 and sb.state.capacity.peak == 1
