"""Load N synthetic events through ``PostgresSink.write()``: staged vs direct COPY, 1 vs 2
loaders, with/without the ``events.occurred_at`` index. Not a test; prints rows/s.

    .venv/bin/python bench/bench_sink.py                 # embedded PostgreSQL in a temp dir
    .venv/bin/python bench/bench_sink.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Each variant runs on a fresh database (created from ``--dsn``'s server, dropped after), with a
CHECKPOINT before timing. Records are built in memory first, so only the load is timed.
Batches of ``--batch`` rows; loader k writes shard k (writes of one shard stay ordered).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from etl.models import Batch, Checkpoint, Position, Record, ShardState
from etl.sink import EmbeddedPostgres, PostgresSink
from etl.source.datasync import EVENTS

TYPES = ("page_view", "click", "signup", "purchase", "login", "logout", "search", "error")


def make_records(n: int, seed: int = 7) -> list[Record]:
    rnd = random.Random(seed)
    start = dt.datetime(2026, 1, 27, tzinfo=dt.UTC)
    sessions = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(5000)]
    users = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(2000)]
    out: list[Record] = []
    for i in range(n):
        ts = start - dt.timedelta(milliseconds=i * 37)  # API order: newest first
        props = {
            "page": f"/p/{rnd.randrange(500)}",
            "device": {"os": "ios", "browser": "safari"},
            "amount": round(rnd.random() * 100, 2),
            "ref": "campaign",
        }
        out.append(
            (
                str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                rnd.choice(sessions),
                rnd.choice(users),
                rnd.choice(TYPES),
                f"event {i % 97}",
                ts,
                json.dumps(props),
                '{"device": "desktop", "browser": "firefox"}',
                ts.isoformat().replace("+00:00", "Z"),
            )
        )
    return out


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run_variant(
    server_url: str,
    records: list[Record],
    *,
    loaders: int,
    index: bool,
    batch: int,
    direct: bool,
    declare: tuple[str, ...] = (),
) -> float:
    name = f"etl_bench_{secrets.token_hex(4)}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    dsn = with_db(server_url, name)
    try:
        async with PostgresSink(dsn, stream=EVENTS, loaders=loaders, direct_copy=direct) as sink:
            if not index:
                await admin(dsn, "DROP INDEX events_time_user_idx")
            for name in declare:  # push datasets: each batch also writes its outbox rows
                kind = "events" if name == "events" else "aggregate"
                await admin(
                    dsn,
                    "INSERT INTO push_datasets (name, destination, kind)"
                    f" VALUES ('{name}', 'databox', '{kind}')",
                )
            await sink.add_shards([ShardState(f"s{k}", None, None) for k in range(loaders)])
            await admin(dsn, "CHECKPOINT")
            chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
            per_loader = [chunks[k::loaders] for k in range(loaders)]

            async def loader(k: int) -> int:
                inserted = 0
                for chunk in per_loader[k]:
                    last = chunk[-1]
                    cp = Checkpoint(
                        f"s{k}", Position(int(last[5].timestamp() * 1000), last[0]), "c", False, 1
                    )
                    res = await sink.write(Batch(chunk, [], cp, len(chunk)))
                    inserted += res.inserted
                return inserted

            t = time.perf_counter()
            done = await asyncio.gather(*(loader(k) for k in range(loaders)))
            elapsed = time.perf_counter() - t
            assert sum(done) == len(records), (sum(done), len(records))
            return len(records) / elapsed
    finally:
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def bench(
    server_url: str, n: int, reps: int, batch: int, declare: tuple[str, ...] = ()
) -> None:
    t = time.perf_counter()
    records = make_records(n)
    print(f"built {n:,} records in {time.perf_counter() - t:.1f}s; batches of {batch:,}")
    print(f"load average before: {os.getloadavg()}")
    # (loaders, occurred_at index, direct COPY)
    variants = [(2, True, False), (2, True, True), (2, False, True), (1, True, True)]
    results: dict[tuple[int, bool, bool], list[float]] = {v: [] for v in variants}
    for _ in range(reps):
        for loaders, index, direct in variants:
            results[(loaders, index, direct)].append(
                await run_variant(
                    server_url,
                    records,
                    loaders=loaders,
                    index=index,
                    batch=batch,
                    direct=direct,
                    declare=declare,
                )
            )
    print(
        f"{'loaders':>7} {'occurred_at index':>18} {'load':>7} {'best rows/s':>12} "
        f"{'median rows/s':>14}"
    )
    for (loaders, index, direct), rates in results.items():
        print(
            f"{loaders:>7} {'yes' if index else 'no':>18} {'direct' if direct else 'staged':>7} "
            f"{max(rates):>12,.0f} {statistics.median(rates):>14,.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", help="server DSN (a role that may CREATE DATABASE)")
    ap.add_argument("-n", type=int, default=500_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument(
        "--declare",
        action="append",
        default=[],
        help="push dataset declared before loading (repeatable): the outbox's cost",
    )
    args = ap.parse_args()
    declare = tuple(args.declare)
    if declare:
        print(f"push datasets declared: {', '.join(declare)} (each batch writes outbox rows)")
    if args.dsn:
        asyncio.run(bench(args.dsn, args.n, args.reps, args.batch, declare))
        return
    with (
        tempfile.TemporaryDirectory(prefix="etl-bench-") as tmp,
        EmbeddedPostgres(Path(tmp) / "pg", database="postgres") as dsn,
    ):
        print("embedded PostgreSQL (pgserver), stock settings")
        asyncio.run(bench(dsn, args.n, args.reps, args.batch, declare))


if __name__ == "__main__":
    main()
