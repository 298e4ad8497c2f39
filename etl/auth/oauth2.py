"""OAuth2 clients: the token endpoint, client credentials, and refresh tokens that rotate.

Rotation (GitHub App user tokens, many SaaS APIs): a refresh token is single-use, and the
answer carries the next one. ``RotatingRefresh`` therefore commits the new token set to the
``TokenStore`` **before** the new access token is used, under one ``asyncio.Lock`` that
re-checks expiry (the old token may have been refreshed by a coroutine that held the lock
first). The only window in which a crash loses the new refresh token is the token request
itself (the server spent the old one, the answer never arrived or was not yet committed);
it is one round trip and one commit, and nothing else happens inside it.

A refresh the server rejects is an ``AuthError`` (exit 4) saying to run ``etl auth <source>``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from etl.auth.tokens import TokenSet, TokenStore
from etl.errors import AuthError, TransientSourceError

#: Error codes of a token endpoint that mean "these credentials are no good".
REJECTED = frozenset(
    {
        "invalid_grant",
        "bad_refresh_token",
        "invalid_client",
        "unauthorized_client",
        "incorrect_client_credentials",
        "invalid_request",
    }
)


class Reply(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def body(self) -> bytes: ...


class Requester(Protocol):
    """What the OAuth2 clients need of HTTP (``etl.source.http.Http`` is one)."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply: ...


class TokenEndpoint:
    """``POST`` a grant as a form, read the answer as JSON (or a form, as GitHub's default)."""

    def __init__(
        self, http: Requester, url: str, client_id: str, client_secret: str | None = None
    ) -> None:
        self.http = http
        self.url = url
        self.client_id = client_id
        self._secret = client_secret

    async def post(self, grant: Mapping[str, str]) -> dict[str, Any]:
        """A grant to the token endpoint (the client secret added when there is one)."""
        form = dict(grant)
        if self._secret:
            form["client_secret"] = self._secret
        return await self.post_to(self.url, form)

    async def post_to(self, url: str, grant: Mapping[str, str]) -> dict[str, Any]:
        form = {"client_id": self.client_id, **grant}
        resp = await self.http.request(
            "POST",
            url,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            data=urlencode(form).encode(),
        )
        if resp.status >= 500 or resp.status == 429:
            raise TransientSourceError(f"token endpoint: HTTP {resp.status}")
        body = _parse(resp.body)
        if body is None:
            if resp.status >= 400:
                raise AuthError(f"token endpoint: HTTP {resp.status}")
            raise TransientSourceError("token endpoint: an answer that is neither JSON nor a form")
        return body


def _parse(raw: bytes) -> dict[str, Any] | None:
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
    pairs = parse_qsl(text)
    return dict(pairs) if pairs else None


def error_of(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    return str(error) if error else None


class ClientCredentials:
    """The client credentials grant: a token for the app itself, fetched again when it expires."""

    def __init__(
        self, endpoint: TokenEndpoint, *, scope: str | None, wall: Callable[[], float]
    ) -> None:
        self.endpoint = endpoint
        self.scope = scope
        self.wall = wall
        self._tokens: TokenSet | None = None
        self._lock = asyncio.Lock()

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None:
        tokens = self._tokens
        if tokens is None or not tokens.fresh(self.wall(), 60.0):
            async with self._lock:
                tokens = self._tokens
                if tokens is None or not tokens.fresh(self.wall(), 60.0):
                    tokens = self._tokens = await self._fetch()
        headers["Authorization"] = f"Bearer {tokens.access_token}"

    async def _fetch(self) -> TokenSet:
        grant = {"grant_type": "client_credentials"}
        if self.scope:
            grant["scope"] = self.scope
        body = await self.endpoint.post(grant)
        error = error_of(body)
        if error is not None:
            raise AuthError(f"the token endpoint refused the client credentials ({error})")
        return TokenSet.from_response(body, self.wall(), "client credentials")

    async def renew(self) -> bool:
        self._tokens = None
        return True

    def describe(self) -> str:
        return "OAuth2 client credentials"


class RotatingRefresh:
    """Bearer tokens from a refresh token that the server replaces at every use."""

    def __init__(
        self,
        endpoint: TokenEndpoint,
        store: TokenStore,
        source: str,
        *,
        wall: Callable[[], float],
        initial_refresh_token: str | None = None,
        margin_s: float = 300.0,
    ) -> None:
        self.endpoint = endpoint
        self.store = store
        self.source = source
        self.wall = wall
        self._initial = initial_refresh_token
        self.margin_s = margin_s
        self._tokens: TokenSet | None = None
        self._stale: TokenSet | None = None
        self._loaded = False
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def describe(self) -> str:
        return "OAuth2 refresh token (rotating)"

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None:
        tokens = await self.current()
        headers["Authorization"] = f"Bearer {tokens.access_token}"

    async def current(self) -> TokenSet:
        tokens = self._tokens
        if tokens is not None and tokens is not self._stale and self._usable(tokens):
            return tokens
        async with self._lock:  # re-check: another request may have refreshed meanwhile
            if not self._loaded:
                self._tokens = await self.store.load(self.source)
                self._loaded = True
                if self._tokens is None and self._initial:
                    self._tokens = TokenSet("", 0.0, self._initial)
            tokens = self._tokens
            if tokens is None:
                raise AuthError(self._sign_in("no tokens are stored for it"))
            if tokens is self._stale or not self._usable(tokens):
                tokens = self._tokens = await self._refresh(tokens)
            return tokens

    def _usable(self, tokens: TokenSet) -> bool:
        return bool(tokens.access_token) and tokens.fresh(self.wall(), self.margin_s)

    async def renew(self) -> bool:
        """The API said 401 to the current access token: refresh before the next request."""
        self._stale = self._tokens
        return self._tokens is not None and self._tokens.refresh_token is not None

    async def _refresh(self, old: TokenSet) -> TokenSet:
        now = self.wall()
        if old.refresh_token is None:
            raise AuthError(self._sign_in("its access token expired and there is no refresh token"))
        if old.refresh_expires_at is not None and now >= old.refresh_expires_at:
            raise AuthError(self._sign_in("its refresh token expired"))
        body = await self.endpoint.post(
            {"grant_type": "refresh_token", "refresh_token": old.refresh_token}
        )
        error = error_of(body)
        if error is not None:
            raise AuthError(self._sign_in(f"the server rejected the refresh token ({error})"))
        new = TokenSet.from_response(body, now, f"{self.source} refresh")
        if new.refresh_token is None:  # not a rotating server: the old one stays valid
            new = TokenSet(
                new.access_token, new.expires_at, old.refresh_token, old.refresh_expires_at
            )
        await self.store.save(self.source, new)  # committed before the access token is used
        self.refreshes += 1
        return new

    def _sign_in(self, why: str) -> str:
        return (
            f"cannot authenticate to {self.source}: {why}; "
            f"sign in again with `etl auth {self.source}`"
        )
