"""OAuth2 tokens as a value, and where they are kept between runs (the ``TokenStore`` seam).

A ``TokenSet`` never prints its tokens: ``repr`` shows only whether each is present and when
it expires. The PostgreSQL store is ``etl.sink.tokens.PgTokenStore``; any object with the
two methods below will do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from etl.errors import AuthError


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str = field(repr=False)
    expires_at: float | None = None  # epoch seconds; None: does not expire
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=***, expires_at={self.expires_at}, refresh_token="
            f"{'***' if self.refresh_token else None}, "
            f"refresh_expires_at={self.refresh_expires_at})"
        )

    def fresh(self, now: float, margin_s: float) -> bool:
        """Usable for at least ``margin_s`` more seconds."""
        return self.expires_at is None or now < self.expires_at - margin_s

    @classmethod
    def from_response(cls, body: Mapping[str, Any], now: float, what: str) -> TokenSet:
        """An RFC 6749 token response (``expires_in`` relative) as absolute times."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError(f"{what}: the token endpoint answered without an access_token")
        refresh = body.get("refresh_token")

        def at(key: str) -> float | None:
            value = body.get(key)
            return now + float(value) if isinstance(value, int | float) else None

        return cls(
            access,
            at("expires_in"),
            refresh if isinstance(refresh, str) and refresh else None,
            at("refresh_token_expires_in"),
        )


class TokenStore(Protocol):
    """Durable tokens per source name. ``save`` returns only once the tokens are committed."""

    async def load(self, source: str) -> TokenSet | None: ...

    async def save(self, source: str, tokens: TokenSet) -> None: ...


class MemoryTokenStore:
    """Tokens for one process only: for a throwaway server (the bundled sandbox)."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}

    async def load(self, source: str) -> TokenSet | None:
        return self._tokens.get(source)

    async def save(self, source: str, tokens: TokenSet) -> None:
        self._tokens[source] = tokens
