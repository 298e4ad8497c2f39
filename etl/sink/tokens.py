"""``PgTokenStore``: OAuth2 tokens per source in PostgreSQL (the ``TokenStore`` seam).

One row per source in ``source_tokens``, replaced in one autocommitted statement, so
``save`` returns only when the new refresh token is durable. The two tokens are sealed
(``etl.auth.sealing``: ``fernet:…`` ciphertext, the key from ``ETL_SECRET_KEY`` or the key
file), so reading the table shows no token; the expiry times stay readable. A row an older
version stored in clear (or sealed with a key that is no longer the first) is sealed again
with the first key when it is loaded, guarded so it never overwrites a newer rotation. No
``etl`` command reads the tokens back out, and errors never carry them.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from etl.auth.sealing import PREFIX, Opened, Sealer, SecretKey
from etl.auth.tokens import TokenSet
from etl.errors import ConfigError, SinkError
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
COMMENT ON TABLE source_tokens IS
    'OAuth2 tokens per source, sealed (fernet:...) with ETL_SECRET_KEY or the key file';
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

# Seal a row read in clear (or under an old key) again, unless it changed meanwhile.
_RESEAL = """
UPDATE source_tokens SET access_token = $2, refresh_token = $3
WHERE source = $1 AND access_token = $4 AND refresh_token IS NOT DISTINCT FROM $5
"""


def _ts(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class PgTokenStore:
    """``key``: where the sealing key comes from (default: ``ETL_SECRET_KEY``, else the key
    file); it is read on first use, so a wrong or missing key is a ``ConfigError``."""

    def __init__(self, dsn: str, *, key: SecretKey | None = None, timeout_s: float = 10.0) -> None:
        self._dsn = dsn
        self._key = key or SecretKey()
        self._timeout = timeout_s

    def check_key(self) -> None:
        """Fail now (exit 2) rather than after a sign-in when the key cannot be had."""
        self._key.sealer()

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
            if row is None:
                return None
            sealer = self._sealer_for(source, row["access_token"], row["refresh_token"])
            access = sealer.open(row["access_token"], source)
            refresh = (
                None if row["refresh_token"] is None else sealer.open(row["refresh_token"], source)
            )
            if access.stale or (refresh is not None and refresh.stale):
                await conn.execute(
                    _RESEAL,
                    source,
                    sealer.seal(access.text),
                    None if refresh is None else sealer.seal(refresh.text),
                    row["access_token"],
                    row["refresh_token"],
                )
        except DB_ERRORS as exc:
            raise SinkError(f"token store: cannot read the tokens of {source}") from exc
        finally:
            await conn.close()
        return TokenSet(
            access.text,
            _epoch(row["expires_at"]),
            _text(refresh),
            _epoch(row["refresh_expires_at"]),
        )

    def _sealer_for(self, source: str, *stored: str | None) -> Sealer:
        """The sealer; a key is made only when no stored token needs an existing one."""
        sealed = any(s is not None and s.startswith(PREFIX) for s in stored)
        sealer = self._key.sealer() if not sealed else self._key.existing()
        if sealer is None:
            where = self._key.where()
            raise ConfigError(
                f"the stored tokens of {source} are sealed, and there is no key at {where} "
                "(nor in ETL_SECRET_KEY): restore the key file or set ETL_SECRET_KEY to the key "
                f"they were sealed with, or sign in again with `etl auth {source}`"
            )
        return sealer

    async def save(self, source: str, tokens: TokenSet) -> None:
        sealer = self._key.sealer()
        conn = await self._connect()
        try:
            await conn.execute(
                _SAVE,
                source,
                sealer.seal(tokens.access_token),
                _ts(tokens.expires_at),
                None if tokens.refresh_token is None else sealer.seal(tokens.refresh_token),
                _ts(tokens.refresh_expires_at),
            )
        except DB_ERRORS as exc:
            raise SinkError(f"token store: cannot save the new tokens of {source}") from exc
        finally:
            await conn.close()


def _text(opened: Opened | None) -> str | None:
    return None if opened is None else opened.text
