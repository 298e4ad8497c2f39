"""Helpers for push tests: load synthetic events through the real sink, run the real pusher
against the real sandbox's Databox surface, on virtual time linked to the sandbox's clock."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from etl.clock import FakeClock
from etl.models import Batch, Checkpoint, Position, Record, ShardState
from etl.push.log import PushDelivery
from etl.push.pusher import PushCounters, PushOptions
from etl.push.run import push_main
from etl.sandbox.databox.config import DATABOX_DEMO_KEY
from etl.settings import PushSettings
from etl.sink.postgres import PostgresSink
from etl.source.datasync import EVENTS
from tests.fixtures_sandbox import SandboxHandle

TYPES = ("page_view", "click", "purchase", "error")
START = dt.datetime(2026, 1, 27, 10, 0, tzinfo=dt.UTC)


def make_records(
    n: int, *, seed: int = 1, start: dt.datetime = START, step_s: float = 7.0
) -> list[Record]:
    """``n`` valid events, newest first, ``step_s`` apart, four types, 20 users."""
    rnd = random.Random(seed)
    users = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(20)]
    out: list[Record] = []
    for i in range(n):
        ts = start - dt.timedelta(seconds=i * step_s)
        user = users[i % len(users)]
        out.append(
            (
                str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                user,
                user,
                TYPES[i % len(TYPES)],
                f"event {i}",
                ts,
                json.dumps({"page": f"/p/{i % 5}"}),
                json.dumps({"deviceType": "mobile", "browser": "Firefox"}),
                ts.isoformat(),
            )
        )
    return out


async def load(
    db_url: str,
    records: list[Record],
    *,
    batch: int = 500,
    shard: str = "s1",
    overwrite: bool = False,
) -> None:
    """Write ``records`` in batches through ``PostgresSink.write`` (the load transaction)."""
    async with PostgresSink(db_url, stream=EVENTS) as sink:
        await sink.add_shards([ShardState(shard, None, None)])
        for i in range(0, len(records), batch):
            chunk = records[i : i + batch]
            last = chunk[-1]
            cp = Checkpoint(
                shard, Position(int(last[5].timestamp() * 1000), last[0]), "c", False, 1
            )
            await sink.write(Batch(chunk, [], cp, len(chunk), overwrite=overwrite))


@dataclass
class PushRun:
    counters: PushCounters
    deliveries: list[PushDelivery] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def databox_url(sb: SandboxHandle) -> str:
    return sb.root_url + "/databox"


async def push(
    db_url: str,
    sb: SandboxHandle,
    clock: FakeClock,
    datasets: tuple[str, ...] = (),
    *,
    key: str = DATABOX_DEMO_KEY,
    **options: Any,
) -> PushRun:
    run = PushRun(PushCounters())
    settings = PushSettings(databox_url=databox_url(sb), databox_key=key, datasets=datasets)
    run.counters = await push_main(
        db_url,
        settings,
        clock,
        on_delivery=run.deliveries.append,
        on_message=run.messages.append,
        options=PushOptions(**{"seed": 7, "verify_wait_s": 5.0, **options}),
    )
    return run


def remote(sb: SandboxHandle, title: str) -> list[dict[str, Any]]:
    """What the sandbox stores in the dataset titled ``title``."""
    found = [d for d in sb.state.databox.store.datasets.values() if d.title == title]
    assert len(found) == 1, [d.title for d in sb.state.databox.store.datasets.values()]
    return found[0].records


async def query(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
