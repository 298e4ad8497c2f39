"""One push session: connect, migrate, take the push lock, declare, create, drain, verify.

``push_main`` drains what is owed now; with ``follow`` (``etl ingest --push``) it keeps
draining as loads commit until ``follow`` is set, then drains the rest and verifies.
Database failures become ``SinkError`` (exit 6), a second drainer ``LockHeld`` (exit 7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from etl import pg
from etl.errors import LockHeld
from etl.models import Clock
from etl.push import store
from etl.push.databox import DataboxClient
from etl.push.datasets import specs
from etl.push.log import PushDelivery
from etl.push.pusher import PushCounters, Pusher, PushOptions
from etl.settings import PushSettings
from etl.sink.schema import migrate

POLL_S = 1.0  # while following a load: how often to look for new outbox rows


def options_of(settings: PushSettings) -> PushOptions:
    return PushOptions(
        rate_per_s=settings.rate_per_s,
        max_attempts=settings.max_attempts,
        verify_every=settings.verify_every,
        verify_wait_s=settings.verify_wait_s,
    )


async def push_main(
    dsn: str,
    settings: PushSettings,
    clock: Clock,
    *,
    on_delivery: Callable[[PushDelivery], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    follow: asyncio.Event | None = None,
    options: PushOptions | None = None,
) -> PushCounters:
    say = on_message or (lambda _text: None)
    settings.require_key()
    # A commit lost to a *server* crash only makes a chunk go again (an overwrite by key)
    # or an ingestion be verified again: no need to wait for each commit's WAL flush.
    conn = await pg.connect(dsn, purpose=" to push", server_settings={"synchronous_commit": "off"})
    try:
        try:
            await migrate(conn)
            if not await store.try_lock(conn):
                raise LockHeld("another etl push is draining this database's outbox")
            if settings.datasets:
                new = await store.declare(conn, specs(settings.datasets), "databox")
                for name in new:
                    say(f"{name}: declared; every event already loaded is owed to it")
        except pg.DB_ERRORS as exc:
            raise pg.db_error("preparing the push", exc, dsn) from exc
        async with DataboxClient(
            settings.url, settings.databox_key, timeout_s=settings.request_timeout_s
        ) as client:
            pusher = Pusher(
                conn,
                client,
                clock,
                options or options_of(settings),
                on_delivery=on_delivery,
                on_message=say,
            )
            try:
                datasets = await pusher.prepare()
                if not datasets:
                    say("no dataset declared for Databox: `etl push --dataset NAME` declares one")
                    return pusher.counters
                if follow is not None:
                    while not follow.is_set():
                        if not await pusher.drain(datasets, final=False):
                            await _wait(follow, clock)
                await pusher.drain(datasets, final=True)
            except pg.DB_ERRORS as exc:
                raise pg.db_error("pushing", exc, dsn) from exc
            return pusher.counters
    finally:
        await conn.close()


async def _wait(event: asyncio.Event, clock: Clock) -> None:
    """Until ``event`` is set or ``POLL_S`` has passed on ``clock``."""
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(POLL_S))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            task.cancel()
