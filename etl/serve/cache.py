"""A micro-cache for GET answers: under load, many clients asking the same question within
``ttl_s`` share one database round trip (single flight), and the answer is at most ``ttl_s``
old. Only 200 answers are kept, so a failure (503) is never served from the cache and a
recovered database is seen at once. ``ttl_s`` 0 turns it off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from aiohttp import web

from etl.serve.envelope import Handler

UNCACHED = frozenset({"/metrics"})  # its sync part is remembered, its request counts live
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    status: int
    body: bytes
    content_type: str
    charset: str | None


class MicroCache:
    def __init__(
        self, ttl_s: float, *, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry | None]] = {}
        self._values: dict[str, tuple[float, object]] = {}
        self._value_locks: dict[str, asyncio.Lock] = {}

    async def remember(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """``compute()``'s value, shared for ``ttl_s`` (one computation at a time per key)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > self._clock():
            return cast(T, hit[1])
        async with self._value_locks.setdefault(key, asyncio.Lock()):
            hit = self._values.get(key)
            if hit is not None and hit[0] > self._clock():
                return cast(T, hit[1])
            value = await compute()
            if self.ttl_s > 0:
                self._values[key] = (self._clock() + self.ttl_s, value)
            return value

    def _store(self, key: str, response: web.Response) -> _Entry | None:
        if response.status != 200 or not isinstance(response.body, bytes):
            return None
        if len(self._entries) >= self._max:
            self._entries.clear()  # bounded; a burst of distinct keys just starts over
        entry = _Entry(
            self._clock() + self.ttl_s,
            response.status,
            response.body,
            response.content_type,
            response.charset,
        )
        self._entries[key] = entry
        return entry

    @staticmethod
    def _replay(entry: _Entry) -> web.Response:
        r = web.Response(body=entry.body, status=entry.status, content_type=entry.content_type)
        if entry.charset:
            r.charset = entry.charset
        return r

    def middleware(self) -> Callable[[web.Request, Handler], object]:
        @web.middleware
        async def cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.ttl_s <= 0 or request.method != "GET" or request.path in UNCACHED:
                return await handler(request)
            key = str(request.rel_url)
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                return self._replay(entry)
            waiting = self._inflight.get(key)
            if waiting is not None:
                shared = await asyncio.shield(waiting)
                if shared is not None:
                    return self._replay(shared)
                return await handler(request)
            future: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            stored: _Entry | None = None
            try:
                response = await handler(request)
                if isinstance(response, web.Response):
                    stored = self._store(key, response)
                return response
            finally:
                del self._inflight[key]
                future.set_result(stored)

        return cache_middleware
