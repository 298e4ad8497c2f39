"""The stream token for the feed fast path: obtained like the dashboard does, renewed early."""

from __future__ import annotations

import asyncio

import msgspec

from etl.errors import StreamTokenError, TransientSourceError
from etl.models import Clock
from etl.source.http import Http
from etl.source.responses import raise_for_status

DEFAULT_FEED_PATH = "/api/v1/events/d4ta/x7k9/feed"
BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/144.0.0.0 Safari/537.36"
)


class _Access(msgspec.Struct):
    token: str
    expiresIn: float = 300.0
    endpoint: str = DEFAULT_FEED_PATH
    tokenHeader: str = "X-Stream-Token"


class _Envelope(msgspec.Struct):
    streamAccess: _Access


class StreamToken:
    """Holds the current token; renews it at ``renew_fraction`` of its life, or on demand."""

    def __init__(self, http: Http, clock: Clock, *, renew_fraction: float = 0.8) -> None:
        self._http = http
        self._clock = clock
        self._renew_fraction = renew_fraction
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.endpoint = DEFAULT_FEED_PATH
        self.header = "X-Stream-Token"
        self.obtained = 0

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or self._clock.now() >= self._renew_at:
                await self._obtain()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """The API refused ``token``: the next ``get()`` obtains a new one."""
        if self._token == token:
            self._token = None

    async def _obtain(self) -> None:
        origin = self._http.origin
        resp = await self._http.request(
            "POST",
            f"{origin}/internal/dashboard/stream-access",
            headers={
                "User-Agent": BROWSER_UA,
                "Origin": origin,
                "Referer": f"{origin}/",
                "Cookie": f"dashboard_api_key={self._http.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            data=b"{}",
        )
        raise_for_status(resp, "stream-access")
        try:
            access = msgspec.json.decode(resp.body, type=_Envelope).streamAccess
        except msgspec.DecodeError as exc:
            raise TransientSourceError("stream-access: unreadable response") from exc
        if not access.token:
            raise StreamTokenError("stream-access: no token in the response")
        self._token = access.token
        self.endpoint = access.endpoint or DEFAULT_FEED_PATH
        self.header = access.tokenHeader or "X-Stream-Token"
        self._renew_at = self._clock.now() + max(1.0, access.expiresIn * self._renew_fraction)
        self.obtained += 1
