"""A real `etl serve` app on a loopback port over a real, migrated PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from etl.pg import RecoveringPool
from etl.serve.app import ServeContext, make_app
from etl.sink.schema import migrate

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ALICE = str(uuid.UUID(int=0xA11CE))
BOB = str(uuid.UUID(int=0xB0B))
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def event(
    *, type_: str = "page_view", ts: str = "2026-11-30T10:15:00Z", user: str | None = None
) -> dict[str, Any]:
    """A valid event in the API's own shape, with a fresh id."""
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "name": "home",
        "timestamp": ts,
        "userId": user or str(uuid.uuid4()),
        "sessionId": str(uuid.uuid4()),
        "properties": {"path": "/"},
    }


async def migrated(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture
async def serve_client(db_url: str) -> AsyncIterator[ClientFactory]:
    """``await serve_client(**ServeContext fields)``: a TestClient of a served app."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        *, dsn: str | None = None, migrate_db: bool = True, **kw: Any
    ) -> TestClient[Any, Any]:
        target = dsn or db_url
        if migrate_db:
            await migrated(target)
        kw.setdefault("cache_ttl_s", 0.0)
        ctx = ServeContext(db=RecoveringPool(target, connect_timeout_s=2.0), **kw)
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(ctx), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def at(hours: float) -> str:
    return (T0 + dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


async def seed(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    """Three days, every hour: a page_view by Alice, a click by Bob, at 12:00 a purchase."""
    evs = []
    for h in range(72):
        evs.append(event(type_="page_view", ts=at(h + 0.25), user=ALICE))
        evs.append(event(type_="click", ts=at(h + 0.5), user=BOB))
        if h % 24 == 12:
            evs.append(event(type_="purchase", ts=at(h + 0.75), user=BOB))
    for i in range(0, len(evs), 100):
        assert (await client.post("/events", json=evs[i : i + 100])).status == 201
    return evs
