"""OAuth2 tokens sealed at rest: what ``source_tokens`` holds is ciphertext, never a token.

A stored token is ``fernet:`` + a Fernet token (AES-128-CBC and HMAC-SHA256 from the
``cryptography`` package) of the token's text. Whoever reads the table (``SELECT *``, a
dump, a screen shared) sees no usable token; whoever has the database *and* the key can.

The key, first found wins:

- ``ETL_SECRET_KEY``: a Fernet key (32 url-safe base64 bytes, e.g. the output of
  ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``),
  or several separated by commas: the first seals, every one opens (changing the key: put
  the new one first, keep the old one until the next run has re-sealed the rows);
- the key file ``$XDG_CONFIG_HOME/etl/secret.key`` (``~/.config/etl/secret.key``), made
  with a new key on first need, mode 0600 in a 0700 directory; refused when others can
  read it.

Rows an older version stored in clear, or sealed with a key that is no longer the first,
are read and sealed again with the first key (``Opened.stale``). A key that is missing,
malformed or not the one a row was sealed with is a ``ConfigError`` (exit 2) naming where
the key was looked for and what to do; no message carries a token or a key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from etl.errors import ConfigError

ENV = "ETL_SECRET_KEY"
PREFIX = "fernet:"
KEY_FILE_HINT = "~/.config/etl/secret.key"  # $XDG_CONFIG_HOME/etl/secret.key when that is set
_NEW_KEY = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def key_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "etl" / "secret.key"


@dataclass(frozen=True, slots=True)
class Opened:
    text: str = field(repr=False)  # a token: never in a repr, a log or a traceback
    stale: bool  # stored in clear, or sealed with a key that is not the first: seal again


class Sealer:
    """Seals and opens token text with the keys from one place (``where``, for messages)."""

    def __init__(self, keys: list[Fernet], where: str) -> None:
        self._first = keys[0]
        self._all = MultiFernet(keys)
        self.where = where

    def seal(self, text: str) -> str:
        return PREFIX + self._first.encrypt(text.encode()).decode("ascii")

    def open(self, stored: str, source: str) -> Opened:
        """``stored`` (a token of ``source``, for the message) as text."""
        if not stored.startswith(PREFIX):
            return Opened(stored, stale=True)  # written in clear by a version before sealing
        token = stored.removeprefix(PREFIX)
        with contextlib.suppress(InvalidToken):
            return Opened(self._first.decrypt(token).decode(), stale=False)
        try:
            return Opened(self._all.decrypt(token).decode(), stale=True)
        except InvalidToken as exc:
            raise ConfigError(
                f"the stored tokens of {source} were sealed with another key than the one in "
                f"{self.where}: set {ENV} to the key they were sealed with (several: "
                f"comma-separated), or sign in again with `etl auth {source}` (the new "
                "tokens replace them)"
            ) from exc


def _fernets(text: str, where: str) -> list[Fernet]:
    keys = [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"{where} holds no key; {_NEW_KEY}")
    try:
        return [Fernet(k) for k in keys]
    except ValueError as exc:  # the key itself is never shown
        raise ConfigError(
            f"{where} is not a Fernet key (32 url-safe base64-encoded bytes); {_NEW_KEY}"
        ) from exc


class SecretKey:
    """Where the sealing key comes from (``ETL_SECRET_KEY``, else the key file), read lazily
    and once: a store that never touches tokens never needs a key."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._sealer: Sealer | None = None

    def sealer(self) -> Sealer:
        """The sealer, the key file made when there is no key yet."""
        sealer = self._sealer or self.existing(create=True)
        assert sealer is not None  # made, or a ConfigError said why not
        return sealer

    def existing(self, *, create: bool = False) -> Sealer | None:
        """The sealer of the key already there (None when there is none)."""
        if self._sealer is None:
            value = self._env.get(ENV, "").strip()
            if value:
                self._sealer = Sealer(_fernets(value, ENV), ENV)
            else:
                path = self._path()
                if create or _exists(path):
                    self._sealer = Sealer(_fernets(_read_or_make(path), str(path)), str(path))
        return self._sealer

    def where(self) -> str:
        return ENV if self._env.get(ENV, "").strip() else str(self._path())

    def _path(self) -> Path:
        try:
            return key_file(self._env)
        except RuntimeError as exc:  # no home directory to put it in
            raise ConfigError(f"no home directory for {KEY_FILE_HINT}: set {ENV}") from exc


def _exists(path: Path) -> bool:
    """Whether the key file is there; a path that cannot be looked at counts as there, so
    reading it says why (exit 2) rather than a new key being made beside it."""
    try:
        return path.exists()
    except OSError:
        return True


def _read_or_make(path: Path) -> str:
    try:
        if not path.exists():
            _make(path)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"the key file {path} can be read by others (mode {mode:o}): chmod 600 {path}"
            )
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"cannot use the key file {path} ({exc.strerror or type(exc).__name__}): "
            f"set {ENV}, or XDG_CONFIG_HOME to a writable directory"
        ) from exc


def _make(path: Path) -> None:
    """A new key, written whole to a 0600 file and then linked into place: two processes
    making it at once both end up with the one that was linked first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
