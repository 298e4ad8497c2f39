"""The pusher: drains the outbox into a destination, chunk by chunk, and verifies.

For each declared dataset, in outbox order:

1. build a chunk of at most 100 records (a raw dataset reads the owed events by id; an
   aggregate recomputes every bucket its outbox rows touched);
2. wait for the pacer, POST it; 429 pauses every request for Retry-After; 5xx and lost
   answers back off (capped, jittered) and retry the same chunk; 401/403 stop at once
   (``DestinationAuthError``); a 4xx naming records (``records[i]``) rejects those records
   (each recorded with the API's reason) and sends the rest;
3. only after a 200 with an ingestion id, commit in ONE transaction: the outbox rows' progress,
   the ingestion to verify and the delivery row.

A kill between 2 and 3 re-sends that chunk: into a dataset with primary keys it overwrites
(never a second copy); nothing is marked before it was accepted, so nothing is lost. Every
``verify_every`` chunks and at the end, open ingestions are looked up (one paged list
request for many; one GET each for the rest) and their counts and rejected records stored.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from etl.errors import DestinationError, DestinationRejected, DestinationTransient
from etl.models import Clock
from etl.pg import Conn
from etl.push import log, store
from etl.push.databox import Answer
from etl.push.datasets import CATALOGUE, DatasetSpec
from etl.push.log import PushDelivery
from etl.push.pacing import Pacer
from etl.push.target import PushTarget
from etl.push.verify import Verifier
from etl.settings import PushSettings

Pair = tuple[str, dict[str, Any]]  # (key, record)
T = TypeVar("T")


_D: dict[str, Any] = {f.name: f.default for f in fields(PushSettings)}


@dataclass(frozen=True, slots=True)
class PushOptions:
    """The pusher's knobs; the user-facing ones default to ``PushSettings``'."""

    rate_per_s: float = _D["rate_per_s"]  # requests/s
    burst: float = 2.0  # requests saved up while idle
    max_attempts: int = _D["max_attempts"]  # tries of a chunk on 5xx / no answer (not 429)
    chunk_size: int = 100  # records per request (the API's maximum)
    verify_every: int = _D["verify_every"]  # chunks between verification rounds
    verify_wait_s: float = _D["verify_wait_s"]  # at the end: wait for 'processing' ingestions
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    seed: int | None = None  # jitter


@dataclass
class PushCounters:
    requests: int = 0
    chunks: int = 0
    records: int = 0  # records in accepted requests
    retries: int = 0
    rate_limited: int = 0
    rejected: int = 0  # records rejected (by a 4xx or in a verified ingestion)
    appended: int = 0
    overwritten: int = 0
    verified: int = 0  # ingestions
    unverified: int = 0  # still open after the final round


def _key(spec: DatasetSpec, record: dict[str, Any]) -> str:
    return "|".join(str(record[k]) for k in spec.primary_keys)


def _floor(t: dt.datetime, bucket: str) -> dt.datetime:
    t = t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if bucket == "day" else t


def bucket_ranges(
    rows: list[tuple[dt.datetime, dt.datetime]], bucket: str
) -> list[tuple[Any, Any]]:
    """The whole buckets covering every [lo, hi], merged into disjoint [start, end) ranges."""
    step = dt.timedelta(days=1) if bucket == "day" else dt.timedelta(hours=1)
    spans = sorted((_floor(lo, bucket), _floor(hi, bucket) + step) for lo, hi in rows)
    merged: list[tuple[Any, Any]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _index(field: object) -> int | None:
    """``records[3].amount`` -> 3."""
    if not isinstance(field, str) or not field.startswith("records["):
        return None
    try:
        return int(field[len("records[") : field.index("]")])
    except ValueError:
        return None


class Pusher:
    """Drains one database's outbox into one destination. Holds the push lock's connection."""

    def __init__(
        self,
        conn: Conn,
        client: PushTarget,
        clock: Clock,
        options: PushOptions | None = None,
        *,
        destination: str = "databox",
        on_delivery: Callable[[PushDelivery], None] | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.client = client
        self.clock = clock
        self.options = options or PushOptions()
        self.destination = destination
        self.counters = PushCounters()
        self.pacer = Pacer(clock, self.options.rate_per_s, burst=self.options.burst)
        self._rng = random.Random(self.options.seed)
        self._on_delivery = on_delivery
        self.message: Callable[[str], None] = on_message or (lambda _text: None)
        self.verifier = Verifier(self)
        self.since_verify = 0

    # -- datasets ----------------------------------------------------------------------

    async def prepare(self) -> list[tuple[DatasetSpec, str]]:
        """Every declared dataset of this destination with its remote id; a dataset not
        created yet (or gone at the destination) is created with its primary keys."""
        out: list[tuple[DatasetSpec, str]] = []
        source_id: int | None = None
        for d in await store.declared(self.conn):
            if d.destination != self.destination or d.name not in CATALOGUE:
                continue
            spec = CATALOGUE[d.name]
            remote = d.remote_id
            if remote is not None and not await self.call(self.client.dataset_exists, remote):
                self.message(f"{spec.name}: dataset {remote} is gone; creating it again")
                remote = None
            if remote is None:
                if source_id is None:
                    source_id = await self.call(self.client.create_data_source, "etl")
                remote = await self.call(
                    self.client.create_dataset, spec.title, source_id, spec.primary_keys
                )
                await store.set_remote_id(self.conn, spec.name, remote)
                self.message(
                    f"{spec.name}: created dataset {remote} (primary keys "
                    f"{', '.join(spec.primary_keys)})"
                )
            out.append((spec, remote))
        return out

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)``, paced, retried like a chunk on 429 / 5xx / no answer."""
        failures = 0
        while True:
            await self.pacer.acquire()
            self.counters.requests += 1
            try:
                return await fn(*args)
            except DestinationTransient as exc:
                failures = await self._back_off(exc, failures, "Databox")

    async def _back_off(self, exc: DestinationTransient, failures: int, what: str) -> int:
        """Wait as ``exc`` asks (429: Retry-After; else capped jittered backoff); returns
        the failures so far, raising once they reach ``max_attempts``."""
        self.counters.retries += 1
        if exc.http_status == 429:
            self.counters.rate_limited += 1
            self.pacer.pause_for(exc.retry_after_s)
            return failures
        failures += 1
        if failures >= self.options.max_attempts:
            raise DestinationError(f"{what} kept failing ({failures} attempts): {exc}") from exc
        cap = min(self.options.backoff_cap_s, self.options.backoff_base_s * 2**failures)
        await self.clock.sleep(self._rng.uniform(cap / 2, cap))
        return failures

    # -- draining ----------------------------------------------------------------------

    async def drain(self, datasets: list[tuple[DatasetSpec, str]], *, final: bool = True) -> int:
        """Send everything owed now; returns the chunks accepted. ``final`` waits for the
        open ingestions' verification."""
        before = self.counters.chunks
        for spec, remote in datasets:
            if spec.kind == "events":
                await self._drain_raw(spec, remote)
            else:
                await self._drain_aggregate(spec, remote)
            if final:
                await self.verifier.verify(spec, remote, final=True)
        return self.counters.chunks - before

    async def _drain_raw(self, spec: DatasetSpec, remote: str) -> None:
        size = self.options.chunk_size
        after = 0
        chunk: list[tuple[int, int, Any]] = []  # (outbox id, position in the row, event id)
        while True:
            rows = await store.raw_rows(self.conn, spec.name, after, 8)
            if not rows:
                break
            for row in rows:
                after = row["id"]
                for offset, event_id in enumerate(row["ids"]):
                    chunk.append((row["id"], row["sent"] + offset, event_id))
                    if len(chunk) == size:
                        await self._send_raw(spec, remote, chunk)
                        chunk = []
        if chunk:
            await self._send_raw(spec, remote, chunk)

    async def _send_raw(
        self, spec: DatasetSpec, remote: str, chunk: list[tuple[int, int, Any]]
    ) -> None:
        parts: dict[int, store.Part] = {}
        for outbox_id, position, _ in chunk:
            p = parts.get(outbox_id)
            parts[outbox_id] = store.Part(outbox_id, p.start if p else position, position + 1)
        found = {r["id"]: r for r in await store.records(self.conn, spec, [c[2] for c in chunk])}
        pairs = [(str(c[2]), found[str(c[2])]) for c in chunk if str(c[2]) in found]
        await self._deliver(spec, remote, pairs, list(parts.values()))

    async def _drain_aggregate(self, spec: DatasetSpec, remote: str) -> None:
        assert spec.bucket is not None
        while True:
            rows = await store.aggregate_rows(self.conn, spec.name, 1000)
            if not rows:
                return
            ranges = bucket_ranges([(r["lo"], r["hi"]) for r in rows], spec.bucket)
            records: list[dict[str, Any]] = []
            for start, end in ranges:
                records += await store.records(self.conn, spec, start, end)
            pairs = sorted((_key(spec, r), r) for r in records)
            size = self.options.chunk_size
            for i in range(0, len(pairs), size):
                await self._deliver(spec, remote, pairs[i : i + size], [])
            await store.finish_rows(self.conn, [r["id"] for r in rows])

    async def _deliver(
        self, spec: DatasetSpec, remote: str, pairs: list[Pair], parts: list[store.Part]
    ) -> None:
        """Send ``pairs`` until accepted (or all rejected), then record it with ``parts``."""
        result = await self._post(spec, remote, pairs) if pairs else None
        if result is None:  # nothing left to send (rejected, or the events were purged)
            await store.mark(self.conn, parts)
            return
        answer, sent, delivery = result
        ingestion_id = str(answer.body.get("ingestionId") or "")
        accepted = store.Accepted(spec.name, ingestion_id, answer.request_id, [k for k, _ in sent])
        await store.accept(self.conn, parts, accepted, delivery)
        self.emit(delivery)
        self.counters.chunks += 1
        self.counters.records += len(sent)
        self.since_verify += 1
        if self.since_verify >= self.options.verify_every:
            await self.verifier.verify(spec, remote, final=False)

    async def _post(
        self, spec: DatasetSpec, remote: str, pairs: list[Pair]
    ) -> tuple[Answer, list[Pair], PushDelivery] | None:
        attempt = failures = 0
        while pairs:
            attempt += 1
            await self.pacer.acquire()
            sent_at = dt.datetime.now(dt.UTC)
            t0 = time.perf_counter()
            self.counters.requests += 1
            try:
                answer = await self.client.push(remote, [r for _, r in pairs])
            except DestinationTransient as exc:
                await self._failed(spec, pairs, attempt, sent_at, t0, exc)
                failures = await self._back_off(exc, failures, f"{spec.name}: Databox")
                continue
            except DestinationRejected as exc:
                await self._failed(spec, pairs, attempt, sent_at, t0, exc)
                pairs = await self._rejected(spec, remote, pairs, exc)
                continue
            except DestinationError as exc:  # 401/403: stop here
                await self._failed(spec, pairs, attempt, sent_at, t0, exc)
                raise
            delivery = self._record(spec, pairs, attempt, sent_at, t0, answer)
            return answer, pairs, delivery
        return None

    async def _rejected(
        self, spec: DatasetSpec, remote: str, pairs: list[Pair], exc: DestinationRejected
    ) -> list[Pair]:
        """Record the records a 4xx refused; return those still worth sending."""
        if exc.http_status == 404:
            raise DestinationError(
                f"{spec.name}: Databox dataset {remote} does not exist any more; "
                "run `etl push` again to create it"
            ) from exc
        if exc.http_status == 413 and len(pairs) > 1:  # too large: send halves
            half = len(pairs) // 2
            first = await self._post(spec, remote, pairs[:half])
            if first is not None:
                await self._finish_half(spec, first)
            return pairs[half:]
        bad: dict[int, store.Reject] = {}
        for item in exc.errors:
            i = _index(item.get("field"))
            if i is not None and 0 <= i < len(pairs):
                bad[i] = store.Reject(
                    pairs[i][0],
                    _s(item.get("code")),
                    _s(item.get("message")) or str(exc),
                    _s(item.get("field")),
                )
        if not bad:  # the request as a whole: every record is refused with its reason
            bad = {i: store.Reject(k, None, str(exc), None) for i, (k, _) in enumerate(pairs)}
        await store.rejects(self.conn, spec.name, list(bad.values()), None, exc.request_id)
        self.counters.rejected += len(bad)
        self.message(f"{spec.name}: {len(bad)} record(s) rejected: {exc}")
        return [p for i, p in enumerate(pairs) if i not in bad]

    async def _finish_half(
        self, spec: DatasetSpec, result: tuple[Answer, list[Pair], PushDelivery]
    ) -> None:
        answer, sent, delivery = result
        accepted = store.Accepted(
            spec.name,
            str(answer.body.get("ingestionId") or ""),
            answer.request_id,
            [k for k, _ in sent],
        )
        await store.accept(self.conn, [], accepted, delivery)
        self.emit(delivery)

    # -- the delivery log --------------------------------------------------------------

    def _record(
        self,
        spec: DatasetSpec,
        pairs: list[Pair],
        attempt: int,
        sent_at: dt.datetime,
        t0: float,
        answer: Answer | None = None,
        exc: DestinationError | None = None,
    ) -> PushDelivery:
        return PushDelivery(
            destination=self.destination,
            dataset=spec.name,
            sent_at=sent_at,
            duration_ms=(time.perf_counter() - t0) * 1000.0,
            rows=len(pairs),
            columns=spec.column_names,
            attempt=attempt,
            http_status=answer.status if answer else (exc.http_status if exc else None),
            request_id=answer.request_id if answer else (exc.request_id if exc else None),
            ingestion_id=str(answer.body.get("ingestionId")) if answer else None,
            accepted=None,
            rejected=None,
            success=answer is not None,
            error=str(exc) if exc else None,
        )

    async def _failed(
        self,
        spec: DatasetSpec,
        pairs: list[Pair],
        attempt: int,
        sent_at: dt.datetime,
        t0: float,
        exc: DestinationError,
    ) -> None:
        delivery = self._record(spec, pairs, attempt, sent_at, t0, exc=exc)
        await log.insert(self.conn, delivery)
        self.emit(delivery)

    def emit(self, delivery: PushDelivery) -> None:
        if self._on_delivery is not None:
            self._on_delivery(delivery)


def _s(value: object) -> str | None:
    return None if value is None else str(value)
