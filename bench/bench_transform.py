"""Decode + transform throughput on synthetic 5000-event pages shaped like the real API.

Two timestamp mixes:

* ``api``: as ``/events`` sends them (spec §3.2): an epoch-ms number when ``i % 3 == 0``,
  else an ISO-8601 string with ms and ``Z``;
* ``mixed``: a harder mix: half ISO-8601 (``Z`` with ms, ``+05:30`` offsets, zone-less), a third
  epoch-ms numbers, the rest epoch-ms strings, epoch seconds and RFC 2822.

Prints events/s (best and median over the repetitions) for decode, transform and both.

    .venv/bin/python bench/bench_transform.py [--pages 20] [--reps 7] [--mix api mixed]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import statistics
import time
import uuid
from collections.abc import Callable

import msgspec

from etl.source.decode import decode_page
from etl.sources.events import REQUIRED_FIELDS
from etl.transform import RequiredFields, transform_page

REQUIRED = RequiredFields(REQUIRED_FIELDS)  # as the ingest checks them

TYPES = ["page_view", "click", "api_call", "form_submit", "scroll", "purchase", "error", "video"]
PAGE_SIZE = 5000


def _ts(rng: random.Random, ms: int, i: int, mix: str) -> object:
    d = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    if mix == "api":
        return ms if i % 3 == 0 else d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    r = rng.random()
    if r < 0.40:
        return d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if r < 0.45:
        return d.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat()
    if r < 0.50:
        return d.replace(tzinfo=None).isoformat(timespec="seconds")
    if r < 0.83:
        return ms
    if r < 0.93:
        return str(ms)
    if r < 0.97:
        return ms // 1000
    return d.strftime("%a, %d %b %Y %H:%M:%S GMT")


def make_pages(n_pages: int, mix: str = "api", seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    sessions = [
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.choice(["mobile", "tablet"]))
        for _ in range(500)
    ]
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(100)]
    ms = 1769541612369
    pages = []
    for p in range(n_pages):
        data = []
        for i in range(PAGE_SIZE):
            ms -= rng.randint(0, 2000)
            sid, device = rng.choice(sessions)
            props: dict[str, object] = {"page": rng.choice(["/home", "/pricing", "/docs"])}
            if rng.random() < 0.5:
                props["device"] = {"os": "ios", "browser": "safari"}
                props["amount"] = round(rng.random() * 100, 2)
            data.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "sessionId": sid,
                    "userId": rng.choice(users),
                    "type": rng.choice(TYPES),
                    "name": f"event_{rng.getrandbits(30):06x}",
                    "properties": props,
                    "timestamp": _ts(rng, ms, i, mix),
                    "session": {"id": sid, "deviceType": device, "browser": "Edge"},
                }
            )
        pages.append(
            msgspec.json.encode(
                {
                    "data": data,
                    "pagination": {
                        "limit": PAGE_SIZE,
                        "hasMore": True,
                        "nextCursor": f"cursor{p}",
                        "cursorExpiresIn": 116,
                    },
                    "meta": {"total": n_pages * PAGE_SIZE, "returned": PAGE_SIZE},
                }
            )
        )
    return pages


def measure(fn: Callable[[], None], events: int, reps: int) -> tuple[float, float]:
    rates = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        rates.append(events / (time.perf_counter() - t0))
    return max(rates), statistics.median(rates)


def run(mix: str, n_pages: int, reps: int) -> None:
    pages = make_pages(n_pages, mix)
    n = n_pages * PAGE_SIZE
    decoded = [decode_page(b) for b in pages]
    check = [transform_page(p.events, required=REQUIRED) for p in decoded]
    kept = sum(len(r.records) for r in check)
    bad = sum(len(r.quarantined) for r in check)
    mb = sum(map(len, pages)) / 1e6
    print(f"\nmix={mix}: {n_pages} pages x {PAGE_SIZE} events, {mb:.1f} MB; kept {kept}, bad {bad}")

    def decode_only() -> None:
        for b in pages:
            decode_page(b)

    def transform_only() -> None:
        for p in decoded:
            transform_page(p.events, required=REQUIRED)

    def both() -> None:
        for b in pages:
            transform_page(decode_page(b).events, required=REQUIRED)

    print(f"{'stage':<20}{'best ev/s':>14}{'median ev/s':>14}{'us/event (med)':>16}")
    for label, fn in (
        ("decode", decode_only),
        ("transform", transform_only),
        ("decode+transform", both),
    ):
        best, med = measure(fn, n, reps)
        print(f"{label:<20}{best:>14,.0f}{med:>14,.0f}{1e6 / med:>16.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--mix", nargs="+", choices=["api", "mixed"], default=["api", "mixed"])
    args = ap.parse_args()
    for mix in args.mix:
        run(mix, args.pages, args.reps)


if __name__ == "__main__":
    main()
