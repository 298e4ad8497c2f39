"""How a request proves who it is: the ``Auth`` seam and the static schemes.

``apply`` adds headers or query parameters to a request about to be sent. When the API
answers 401, the caller asks ``renew()`` once: True means new credentials are in place
and the request is worth one more try (OAuth2); False means the credentials are simply
wrong (a key or a fixed token), which is an ``AuthError`` (exit 4).
"""

from __future__ import annotations

from typing import Literal, Protocol

Location = Literal["header", "query"]


class Auth(Protocol):
    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None: ...

    async def renew(self) -> bool: ...

    def describe(self) -> str:
        """What it is, for messages: never the secret itself."""
        ...


class NoAuth:
    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None:
        return None

    async def renew(self) -> bool:
        return False

    def describe(self) -> str:
        return "no authentication"


class ApiKey:
    """A key in a header (``X-API-Key: …``) or a query parameter (``?api_key=…``)."""

    def __init__(self, key: str, *, name: str = "X-API-Key", location: Location = "header"):
        self._key = key
        self.name = name
        self.location: Location = location

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None:
        (headers if self.location == "header" else params)[self.name] = self._key

    async def renew(self) -> bool:
        return False

    def describe(self) -> str:
        return f"API key in {self.location} {self.name}"

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, location={self.location!r}, key=***)"


class Bearer:
    """``Authorization: Bearer <token>`` with a token that does not change during the run."""

    def __init__(self, token: str, *, scheme: str = "Bearer") -> None:
        self._token = token
        self.scheme = scheme

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> None:
        headers["Authorization"] = f"{self.scheme} {self._token}"

    async def renew(self) -> bool:
        return False

    def describe(self) -> str:
        return f"{self.scheme} token"

    def __repr__(self) -> str:
        return f"Bearer(scheme={self.scheme!r}, token=***)"
