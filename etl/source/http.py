"""The one aiohttp session of a run, and the translation of aiohttp errors into ours."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from etl.errors import ConfigError, ResponseTooLarge, TransientSourceError, Unreachable
from etl.settings import DEFAULTS


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def split_base_url(base_url: str) -> tuple[str, str]:
    """``http://h:p/api/v1`` -> (``http://h:p``, ``/api/v1``); ConfigError when not http(s)."""
    parts = urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"API URL must be http(s)://host[:port]/api/v1, got {base_url!r}")
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/api/v1"


class Http:
    """Owns the ClientSession; every request returns a Response or raises our errors."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = DEFAULTS.request_timeout_s,
        connections: int = 32,
        user_agent: str = "etl/0.1 (+datasync ingest)",
        max_body_bytes: int = int(DEFAULTS.max_response_mb * 2**20),
    ) -> None:
        self.origin, self.api_path = split_base_url(base_url)
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
        self._connections = connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self.reached = False  # True once the server has answered anything
        self.max_body_bytes = max_body_bytes

    @property
    def api_key(self) -> str:
        return self._api_key

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=(
                {"X-API-Key": self._api_key, "User-Agent": self._user_agent}
                if self._api_key  # other sources authenticate per request (etl.auth)
                else {"User-Agent": self._user_agent}
            ),
            auto_decompress=True,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def api_url(self, path: str) -> str:
        return f"{self.origin}{self.api_path}{path}"

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> Response:
        """``gate``: awaited once a 200's headers are in, before its body is read."""
        if self._session is None:
            raise RuntimeError("Http used outside 'async with'")
        where = urlsplit(url).path
        try:
            async with self._session.request(
                method, url, params=params, headers=headers, data=data
            ) as resp:
                self.reached = True
                if gate is not None and resp.status == 200:
                    await gate()
                body = await self._read(resp, f"{method} {where}")
                return Response(resp.status, resp.headers, body)
        except TimeoutError as exc:
            raise TransientSourceError(f"{method} {where}: no answer in time") from exc
        except ResponseTooLarge:
            raise
        except aiohttp.ClientPayloadError as exc:
            raise TransientSourceError(f"{method} {where}: the response was cut short") from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise Unreachable(f"cannot resolve the host name {exc.host!r}") from exc
        except aiohttp.ClientConnectorError as exc:
            err = exc.os_error
            reason = (os.strerror(err.errno) if err.errno else "") or str(err) or "no connection"
            raise Unreachable(f"cannot connect to {exc.host}:{exc.port}: {reason.lower()}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            closed = f"{method} {where}: the server closed the connection"
            raise TransientSourceError(closed) from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
            what = str(exc) or "the connection failed"
            raise TransientSourceError(f"{method} {where}: {what}") from exc

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The body, refused (``ResponseTooLarge``) past ``max_body_bytes``: a response can
        never take more memory than the cap, whatever it claims or sends."""
        cap = self.max_body_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise ResponseTooLarge(
                f"{what}: a response of {resp.content_length:,} bytes is over the cap of "
                f"{cap:,} (--max-response-mb)"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(
                    f"{what}: the response passed the cap of {cap:,} bytes (--max-response-mb)",
                    body=b"".join(chunks)[: 1 << 16],
                )
            chunks.append(chunk)
        return b"".join(chunks)
