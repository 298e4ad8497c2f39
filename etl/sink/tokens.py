"""``PgTokenStore``: OAuth2 tokens per source in PostgreSQL (the ``TokenStore`` seam).

One row per source in ``source_tokens``, replaced in one autocommitted statement, so
``save`` returns only when the new refresh token is durable. No ``etl`` command reads the
tokens back out; they are stored as received (whoever can read this table can read them),
and errors never carry them.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from etl.auth.tokens import TokenSet
from etl.errors import SinkError
from etl.pg import DB_ERRORS, connect, db_error
from etl.sink.dsn import redact_dsn

DDL = """
CREATE TABLE IF NOT EXISTS source_tokens (
    source             text PRIMARY KEY,
    access_token       text NOT NULL,
    expires_at         timestamptz,
    refresh_token      text,
    refresh_expires_at timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE source_tokens IS 'OAuth2 tokens per source (secrets: never print them)';
"""

_SAVE = """
INSERT INTO source_tokens AS t
    (source, access_token, expires_at, refresh_token, refresh_expires_at, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (source) DO UPDATE SET
    access_token = excluded.access_token, expires_at = excluded.expires_at,
    refresh_token = excluded.refresh_token, refresh_expires_at = excluded.refresh_expires_at,
    updated_at = now()
"""


def _ts(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class PgTokenStore:
    def __init__(self, dsn: str, *, timeout_s: float = 10.0) -> None:
        self._dsn = dsn
        self._timeout = timeout_s

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        conn = await connect(self._dsn, connect_timeout_s=self._timeout, purpose=" (tokens)")
        try:
            await conn.execute(DDL)
        except DB_ERRORS as exc:
            await conn.close()
            raise db_error(f"token store at {redact_dsn(self._dsn)}", exc, self._dsn) from exc
        return conn

    async def load(self, source: str) -> TokenSet | None:
        conn = await self._connect()
        try:
            row = await conn.fetchrow("SELECT * FROM source_tokens WHERE source = $1", source)
        except DB_ERRORS as exc:
            raise SinkError(f"token store: cannot read the tokens of {source}") from exc
        finally:
            await conn.close()
        if row is None:
            return None
        return TokenSet(
            row["access_token"],
            _epoch(row["expires_at"]),
            row["refresh_token"],
            _epoch(row["refresh_expires_at"]),
        )

    async def save(self, source: str, tokens: TokenSet) -> None:
        conn = await self._connect()
        try:
            await conn.execute(
                _SAVE,
                source,
                tokens.access_token,
                _ts(tokens.expires_at),
                tokens.refresh_token,
                _ts(tokens.refresh_expires_at),
            )
        except DB_ERRORS as exc:
            raise SinkError(f"token store: cannot save the new tokens of {source}") from exc
        finally:
            await conn.close()
