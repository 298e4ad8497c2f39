"""The answer cache of GET routes: answers kept as the bytes sent, shared by every client.

Two lifetimes:

live routes (``/status``, ``/health``, ``/``, ``/metrics``)
    describe the present (heartbeats, a run's progress, the counters): an answer is shared
    for ``ttl_s`` (1 s); once it expired, the next request computes a new one while the
    others are given the last answer (at most ``STALE_S`` past its expiry), so nobody queues
    behind a refresh.
data routes (every other GET but ``/openapi.json``)
    answer from the loaded data, which changes only when something is written: an answer is
    kept until the data's version changes (``etl.read.version``: a fingerprint of the small
    tables every write bumps in its own transaction), or for ``max_age_s`` at most (the
    thresholds service of /anomalies is not versioned). The version is read at most once
    per ``poll_s``, in the background while the known one is younger than two intervals (a
    request never waits for it then), so a write by another process is seen within about
    ``poll_s`` on a busy server and at once on an idle one; a write made through this server
    (POST /events, DELETE /series/{type}) calls ``data_changed()`` and is seen by the next
    request.

Single flight: concurrent requests for the same URL (and version) wait for one computation.
Only 200 answers are kept, so a failure (503) is never served from the cache and a recovered
database is seen at once. While the version cannot be read (database down or busy) the data
answers already kept are still given, up to ``max_age_s``. ``ttl_s`` 0 turns the cache off.
The stored bytes are bounded by ``max_bytes`` (oldest dropped). Per-route hits and misses
are counted for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aiohttp import web

from etl.errors import EtlError
from etl.serve.envelope import Handler

UNCACHED = frozenset({"/openapi.json"})
# /metrics: rendering it costs ~3x a kept answer (0.25-0.35 ms of CPU), which under 50
# clients on a loaded machine made it the slowest route; a scrape a second old is as good
LIVE = frozenset({"/status", "/health", "/", "/metrics"})
STALE_S = 5.0  # a live answer being refreshed is served this long past its expiry
T = TypeVar("T")
VersionSource = Callable[[], Awaitable[str]]


def _retrieve(task: asyncio.Future[None]) -> None:
    """A version read that failed unexpectedly is retried by the next request; its error is
    taken here so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class _Entry:
    tag: object  # live: its expiry time; data: the version it was computed at
    born: float
    status: int
    body: bytes
    content_type: str
    charset: str | None


class AnswerCache:
    def __init__(
        self,
        ttl_s: float,
        *,
        version: VersionSource | None = None,
        poll_s: float = 1.0,
        max_age_s: float = 60.0,
        max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.max_age_s = max_age_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._read_version = version
        self._generation = 0  # bumped by writes through this server
        self._db_version: str | None = None
        self._checked_at = -math.inf
        self._confirmed_at = -math.inf  # the last time the version was read
        self._poll: asyncio.Future[None] | None = None
        self._entries: dict[str, _Entry] = {}
        self._bytes = 0
        self._inflight: dict[tuple[str, object], asyncio.Future[_Entry | None]] = {}
        self._values: dict[str, tuple[float, object]] = {}
        self._data_values: dict[str, tuple[object, float, object]] = {}
        self._value_locks: dict[str, asyncio.Lock] = {}
        # (route pattern, "hit" | "shared" | "miss") -> answers
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def data_changed(self) -> None:
        """Something was written through this server: no answer computed before is valid."""
        self._generation += 1

    async def remember(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """``compute()``'s value, shared for ``ttl_s`` (one computation at a time per key;
        while it runs, others get the last value, at most ``STALE_S`` past its expiry)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > self._clock():
            return cast(T, hit[1])
        lock = self._value_locks.setdefault(key, asyncio.Lock())
        if hit is not None and lock.locked() and self._clock() < hit[0] + STALE_S:
            return cast(T, hit[1])  # being computed again: the last value meanwhile
        async with lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > self._clock():
                return cast(T, hit[1])
            value = await compute()
            if self.ttl_s > 0:
                self._values[key] = (self._clock() + self.ttl_s, value)
            return value

    async def _refresh(self) -> None:
        assert self._read_version is not None
        try:
            found = await self._read_version()
        except EtlError:  # down, busy or not migrated: keep what is known, ask again later
            self._checked_at = self._clock()
            return
        if found != self._db_version:
            self._drop_data()
        self._db_version = found
        self._checked_at = self._confirmed_at = self._clock()

    def confirmed(self) -> bool:
        """The known version was read within ``max_age_s``: what is held for it may be given
        (while the database is down, only until then, as the kept answers)."""
        return self._clock() - self._confirmed_at < self.max_age_s

    async def version(self) -> object | None:
        """The data's version as this server knows it (None: unknown, do not cache)."""
        if self._read_version is None or self.ttl_s <= 0:
            return None
        age = self._clock() - self._checked_at
        if age >= self.poll_s:
            if self._poll is None or self._poll.done():  # one read at a time, shared
                self._poll = asyncio.ensure_future(self._refresh())
                self._poll.add_done_callback(_retrieve)
            # known and recent: answer by it while the read goes on (nobody queues behind
            # it); unknown, or older than two intervals (an idle server): wait for the read
            if self._db_version is None or age >= 2 * self.poll_s:
                await asyncio.shield(self._poll)
        if self._db_version is None:
            return None
        return (self._generation, self._db_version)

    def _drop_data(self) -> None:
        for key in [k for k, e in self._entries.items() if not isinstance(e.tag, float)]:
            self._bytes -= len(self._entries.pop(key).body)

    def _valid(self, entry: _Entry | None, tag: object, now: float) -> bool:
        if entry is None:
            return False
        if isinstance(entry.tag, float):  # live: the tag is its expiry
            return entry.tag > now
        return entry.tag == tag and now - entry.born < self.max_age_s

    def _stale_ok(self, entry: _Entry) -> bool:
        return isinstance(entry.tag, float) and self._clock() < entry.tag + STALE_S

    async def remember_data(
        self, key: str, compute: Callable[[], Awaitable[T]], *, stale_ok: bool = False
    ) -> T:
        """``compute()``'s value, kept while the data's version stays (and ``max_age_s``);
        one computation at a time per key (``stale_ok``: meanwhile, the last value)."""
        tag = await self.version()
        if tag is None:
            return await compute()
        lock = self._value_locks.setdefault(key, asyncio.Lock())
        last = self._data_values.get(key)
        if stale_ok and last is not None and lock.locked():
            return cast(T, last[2])
        async with lock:
            hit = self._data_values.get(key)
            if hit is not None and hit[0] == tag and self._clock() - hit[1] < self.max_age_s:
                return cast(T, hit[2])
            value = await compute()
            self._data_values[key] = (tag, self._clock(), value)
            return value

    def _store(self, key: str, tag: object, response: web.StreamResponse) -> _Entry | None:
        if (
            response.status != 200
            or not isinstance(response, web.Response)
            or not isinstance(response.body, bytes)
        ):
            return None
        now = self._clock()
        entry = _Entry(tag, now, 200, response.body, response.content_type, response.charset)
        old = self._entries.pop(key, None)
        self._bytes += len(entry.body) - (len(old.body) if old else 0)
        self._entries[key] = entry
        while self._bytes > self._max_bytes and self._entries:  # oldest first
            self._bytes -= len(self._entries.pop(next(iter(self._entries))).body)
        return entry

    @staticmethod
    def _replay(entry: _Entry) -> web.Response:
        r = web.Response(body=entry.body, status=entry.status, content_type=entry.content_type)
        if entry.charset:
            r.charset = entry.charset
        return r

    async def _tag(self, path: str) -> object | None:
        if path in LIVE:
            return None if self.ttl_s <= 0 else self._clock() + self.ttl_s
        return await self.version()

    def _count(self, request: web.Request, result: str) -> None:
        info = request.match_info.route.resource
        self.counts[(info.canonical if info is not None else "unmatched", result)] += 1

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        tag = await self._tag(request.path)
        if tag is None:
            return await handler(request)
        key = str(request.rel_url)
        entry = self._entries.get(key)
        if self._valid(entry, tag, self._clock()):
            assert entry is not None
            self._count(request, "hit")
            return self._replay(entry)
        flight = (key, tag if not isinstance(tag, float) else "live")
        waiting = self._inflight.get(flight)
        if waiting is not None and entry is not None and self._stale_ok(entry):
            self._count(request, "stale")  # a live answer being refreshed: the last one
            return self._replay(entry)
        if waiting is not None:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                self._count(request, "shared")
                return self._replay(shared)
            return await handler(request)
        future: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        stored: _Entry | None = None
        self._count(request, "miss")
        try:
            response = await handler(request)
            stored = self._store(key, tag, response)
            return response
        finally:
            del self._inflight[flight]
            future.set_result(stored)

    def middleware(self) -> Callable[[web.Request, Handler], object]:
        @web.middleware
        async def cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "GET" or request.path in UNCACHED:
                return await handler(request)
            return await self.answer(request, handler)

        return cache_middleware

    def snapshot(self) -> list[list[Any]]:
        return [[route, result, n] for (route, result), n in self.counts.items()]

    def render(self, others: Iterable[list[list[Any]]] = ()) -> str:
        """Prometheus lines: answers per route by cache result (plus other workers')."""
        counts: dict[tuple[str, str], int] = defaultdict(int, self.counts)
        for doc in others:
            for route, result, n in doc:
                counts[(route, result)] += n
        lines = [
            "# HELP etl_http_cache_answers_total GET answers by route and cache result"
            " (hit: from memory; shared: waited for another request's computation; stale:"
            " the last live answer while it is refreshed; miss: computed).",
            "# TYPE etl_http_cache_answers_total counter",
        ]
        lines += [
            f'etl_http_cache_answers_total{{route="{route}",result="{result}"}} {n}'
            for (route, result), n in sorted(counts.items())
        ]
        return "\n".join(lines) + "\n"
