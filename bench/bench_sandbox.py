"""How fast the sandbox serves events: 5000-event pages by cursor over loopback.

Starts the sandbox (unlimited: no limits, cache, latency or faults) in a separate process,
then for each concurrency C walks the whole dataset with C workers, each following the
cursor chain of one time slice (forged start cursors, as real clients did). Prints a table
and writes bench/results/sandbox.json. Target: >= 100,000 events/s.

    .venv/bin/python bench/bench_sandbox.py [--events 1000000] [--concurrency 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from etl.sandbox import DEMO_API_KEY, SandboxConfig, serve

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.json"
PAGE = 5000


class _Pagination(msgspec.Struct):
    hasMore: bool
    nextCursor: str | None = None


class _Meta(msgspec.Struct):
    returned: int


class _Page(msgspec.Struct):
    pagination: _Pagination
    meta: _Meta


_decode = msgspec.json.Decoder(_Page).decode


def _server(events: int, port_queue: Any) -> None:
    config = SandboxConfig(events=events, unlimited=True)
    asyncio.run(serve(config, "127.0.0.1", 0, on_ready=port_queue.put))


def _cursor(ts: int) -> str:
    raw = json.dumps(
        {"id": "f" * 8 + "-ffff-4fff-bfff-" + "f" * 12, "ts": ts, "v": 2, "exp": 2**42}
    )
    return base64.b64encode(raw.replace(" ", "").encode()).decode().rstrip("=")


async def _walk(
    http: aiohttp.ClientSession, url: str, start_ts: int | None, stop_ts: int | None
) -> tuple[int, int, int]:
    """Follow one cursor chain from ``start_ts`` (inclusive) down to ``stop_ts`` (exclusive)."""
    cursor = None if start_ts is None else _cursor(start_ts)
    events = pages = nbytes = 0
    while True:
        params = {"limit": str(PAGE)} if cursor is None else {"limit": str(PAGE), "cursor": cursor}
        async with http.get(url, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        page = _decode(body)
        events += page.meta.returned
        pages += 1
        nbytes += len(body)
        cursor = page.pagination.nextCursor
        if not page.pagination.hasMore or cursor is None:
            return events, pages, nbytes
        if stop_ts is not None:
            last_ts = json.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4)))["ts"]
            if last_ts < stop_ts:
                return events, pages, nbytes


async def _run(base: str, concurrency: int, newest: int, oldest: int) -> dict[str, Any]:
    url = base + "/events"
    bounds = [newest + 1 - (newest + 1 - oldest) * i // concurrency for i in range(concurrency + 1)]
    conn = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(headers={"X-API-Key": DEMO_API_KEY}, connector=conn) as http:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(
                _walk(
                    http,
                    url,
                    bounds[i] if i else None,
                    bounds[i + 1] if i + 1 < concurrency else None,
                )
                for i in range(concurrency)
            )
        )
        elapsed = time.perf_counter() - t0
    events = sum(r[0] for r in results)
    pages = sum(r[1] for r in results)
    nbytes = sum(r[2] for r in results)
    return {
        "concurrency": concurrency,
        "events": events,
        "pages": pages,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "mb_per_s": round(nbytes / elapsed / 1e6, 1),
        "ms_per_page": round(elapsed * 1000 / pages * concurrency, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_server, args=(args.events, queue), daemon=True)
    proc.start()
    try:
        base = queue.get(timeout=60)
        startup = time.perf_counter() - t0
        config = SandboxConfig(events=args.events)
        from etl.sandbox.dataset import Dataset

        ds = Dataset(config)
        rows = [asyncio.run(_run(base, c, ds.newest_ts, ds.oldest_ts)) for c in args.concurrency]
    finally:
        proc.terminate()
        proc.join(10)
    print(f"sandbox: {args.events:,} events, unlimited, start-up {startup:.2f} s")
    head = ("conc", "events", "pages", "seconds", "events/s", "MB/s", "ms/page")
    widths = (5, 10, 6, 8, 10, 7, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print(
            f"{r['concurrency']:>5} {r['events']:>10,} {r['pages']:>6} {r['seconds']:>8.2f} "
            f"{r['events_per_s']:>10,} {r['mb_per_s']:>7} {r['ms_per_page']:>8}"
        )
    best = max(r["events_per_s"] for r in rows)
    verdict = "OK" if best >= 100_000 else "BELOW TARGET"
    print(f"best: {best:,} events/s (target >= 100,000): {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sandbox",
                "events": args.events,
                "page": PAGE,
                "startup_s": round(startup, 2),
                "rows": rows,
                "best_events_per_s": best,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
