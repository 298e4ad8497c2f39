"""An API that cannot be reached: fail fast at start-up, keep patience mid-run, say why.

Real connections over loopback (a sandbox that is then shut, a port nobody listens on);
only time is fake, so backoff waits cost nothing.
"""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from etl.clock import FakeClock
from etl.errors import PermanentSourceError
from etl.models import RunCounters, ShardState
from etl.sandbox import FakeClock as SandboxClock
from etl.sandbox import SandboxConfig, build_app
from etl.sandbox.config import DEMO_API_KEY
from etl.source.datasync import DataSyncSource, SourceOptions
from etl.source.http import Http
from etl.source.retry import RetryLog


def closed_port() -> int:
    """A loopback port with nobody listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def events_source(
    base_url: str, key: str, clock: FakeClock, lines: list[str], max_attempts: int = 10
) -> tuple[Http, DataSyncSource]:
    http = Http(base_url, key)
    await http.__aenter__()
    opts = SourceOptions(strategy="events", max_attempts=max_attempts)
    source = DataSyncSource(http, clock, RunCounters(), opts, log=lines.append, log_interval_s=10.0)
    await source.start()
    return http, source


async def test_a_refused_connection_at_start_up_fails_after_three_tries() -> None:
    """Nobody listens at --api-url: three tries, each retry said with its reason and wait,
    then an error in words naming the URL (not a class name, not after minutes)."""
    clock = FakeClock()
    lines: list[str] = []
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    http, source = await events_source(url, "k", clock, lines)
    try:
        with pytest.raises(PermanentSourceError) as caught:
            await source.head()
    finally:
        await http.__aexit__(None, None, None)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the API at {url} (cannot connect to 127.0.0.1:")
    assert "connection refused" in message and "3 attempts" in message
    assert "Error" not in message  # no exception class names
    assert lines and lines[0].startswith("retrying events in ")
    assert "(attempt 2 of 3): cannot connect to 127.0.0.1" in lines[0]
    assert clock.now() < 10  # two short backoffs, not the mid-run patience


async def test_mid_run_the_same_fault_gets_full_patience() -> None:
    """Once the API has answered, losing it is a transient fault: every --max-attempts try
    is made before giving up, and the message says the API kept failing."""
    app = build_app(SandboxConfig(events=100, rate_limit=1000), clock=SandboxClock())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    clock = FakeClock()
    lines: list[str] = []
    url = f"http://127.0.0.1:{port}/api/v1"
    http, source = await events_source(url, DEMO_API_KEY, clock, lines, max_attempts=6)
    try:
        await source.head()  # the API answered once
        await runner.cleanup()  # ...and is gone
        with pytest.raises(PermanentSourceError) as caught:
            await source.lanes()[0].fetch(ShardState("a", None, None), 10)
    finally:
        await http.__aexit__(None, None, None)
        await runner.cleanup()
    assert str(caught.value).startswith("the API kept failing; gave up after 6 attempts: ")
    assert "connection refused" in str(caught.value)
    assert lines and "of 6): " in lines[0]


def test_retries_are_told_at_the_progress_cadence() -> None:
    """The first retry is told at once; more within the interval are counted, not printed,
    and the next line says how many were held back."""
    clock = FakeClock()
    lines: list[str] = []
    log = RetryLog(lines.append, clock, interval_s=10.0)
    log("events", "GET /events: HTTP 503", 1, 10, 0.4)
    clock.advance(1)
    log("feed", "GET /feed: no answer in time", 1, 10, 0.6)
    log("events", "GET /events: HTTP 503", 2, 10, 1.2)
    clock.advance(10)
    log("events", "GET /events: HTTP 502", 3, 10, 2.5)
    assert lines == [
        "retrying events in 0.4 s (attempt 2 of 10): GET /events: HTTP 503",
        "retrying events in 2.5 s (attempt 4 of 10): GET /events: HTTP 502"
        " (+2 more retries since the last such line)",
    ]
