"""Known events loaded through the real sink, for the read-side tests."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable

import asyncpg

from etl.models import Batch, Checkpoint, Position, Record, ShardState
from etl.sink import PostgresSink
from etl.source.datasync import EVENTS

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
USERS = [str(uuid.UUID(int=0xA000 + k)) for k in range(4)]
DEVICES = ("mobile", "tablet", "desktop")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")


def event(
    i: int,
    *,
    at: dt.datetime,
    type: str = "page_view",
    user: str | None = None,
    page: str = "/home",
    device: str | None = "mobile",
    browser: str = "Chrome",
) -> Record:
    """Event number ``i`` (its id is derived from ``i``) shaped like the sandbox's."""
    session = str(uuid.UUID(int=0x5000 + i % 7))
    sess = (
        None
        if device is None
        else json.dumps({"id": session, "deviceType": device, "browser": browser})
    )
    return (
        str(uuid.UUID(int=0x1_0000_0000 + i)),
        session,
        user,
        type,
        f"event_{i}",
        at,
        json.dumps({"page": page}),
        sess,
        str(int(at.timestamp() * 1000)),
    )


def mixed(
    n: int, *, start: dt.datetime = T0, step: dt.timedelta = dt.timedelta(minutes=7)
) -> list[Record]:
    """``n`` events over time: types, users, devices and browsers in rotation."""
    types = ("page_view", "page_view", "click", "purchase", "error")
    return [
        event(
            i,
            at=start + i * step,
            type=types[i % len(types)],
            user=None if i % 11 == 0 else USERS[i % len(USERS)],
            page=f"/p{i % 3}",
            device=None if i % 13 == 0 else DEVICES[i % 3],
            browser=BROWSERS[i % 4],
        )
        for i in range(n)
    ]


def batch(records: list[Record], shard: str = "s") -> Batch:
    last = records[-1]
    cp = Checkpoint(shard, Position(int(last[5].timestamp() * 1000), last[0]), "c", False, 1)
    return Batch(records, [], cp, len(records))


async def load(dsn: str, chunks: Iterable[list[Record]], *, direct: bool = True) -> int:
    """Write each chunk as one batch of shard "s" through ``PostgresSink``; rows inserted."""
    inserted = 0
    async with PostgresSink(dsn, stream=EVENTS, direct_copy=direct) as sink:
        await sink.add_shards([ShardState("s", None, None)])
        for chunk in chunks:
            inserted += (await sink.write(batch(chunk))).inserted
    return inserted


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def execute(dsn: str, sql: str, *args: object) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.execute(sql, *args))
    finally:
        await conn.close()
