"""Which dataset the sync state belongs to, and whether the source is still that dataset.

The state (shards, checkpoints, loaded rows) only makes sense against the dataset it was
built from. A source that was rebuilt, or a different dataset behind the same database
(``SANDBOX_EVENTS=50000`` then the full 3M), must never end as "up to date". The identity
kept with the state (the ``ingest_source`` table) is:

``api``     the API base, normalised (scheme, host, port, path; never a password or query),
            or ``bundled sandbox`` when the tool starts its own;
``key_id``  the first 12 hex digits of SHA-256 of the API key: tells keys apart, reveals
            nothing of the key;
``newest``  the newest event (timestamp, id) when the first full sync was planned;
``oldest``  the oldest event, once the open-ended shard has reached it;
``total``   the total the source stated at the last sync that finished every shard.

The dataset's *content* decides: at the start of every run the source is asked whether the
two anchor events are still there, at their timestamps (one small request each). A missing
anchor, or a stated total below the recorded one, is a different dataset. A new API URL or
key is accepted when the anchors prove the data is the same (a proxy, a key rotation), and
is a mismatch only when there is no anchor to check yet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from etl.errors import SourceMismatch
from etl.models import Position

BUNDLED_SANDBOX = "bundled sandbox"
KEY_ID_DIGITS = 12


def key_id(api_key: str) -> str:
    """A non-secret name for ``api_key`` (empty for no key)."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:KEY_ID_DIGITS]


def api_label(api_url: str | None) -> str:
    """``api_url`` normalised for comparison; the bundled sandbox (None) has a fixed name
    because it listens on a new port every run."""
    if api_url is None:
        return BUNDLED_SANDBOX
    try:
        parts = urlsplit(api_url.strip())
        host = (parts.hostname or "").lower()
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return api_url
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    api: str
    key_id: str
    newest: Position | None = None
    oldest: Position | None = None
    total: int | None = None
    # a re-sync over rows kept from an earlier sync is under way: a loaded row whose content
    # differs from the source's copy is replaced (cleared once every shard is done)
    refresh: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "key_id": self.key_id,
            "newest": _pos_json(self.newest),
            "oldest": _pos_json(self.oldest),
            "total": self.total,
            "refresh": self.refresh,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SourceIdentity:
        total = doc.get("total")
        return cls(
            api=str(doc.get("api", "")),
            key_id=str(doc.get("key_id", "")),
            newest=_pos_from(doc.get("newest")),
            oldest=_pos_from(doc.get("oldest")),
            total=int(total) if isinstance(total, int) else None,
            refresh=doc.get("refresh") is True,
        )


def _pos_json(p: Position | None) -> dict[str, Any] | None:
    return None if p is None else {"ts_ms": p.ts_ms, "id": p.id}


def _pos_from(doc: Any) -> Position | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("ts_ms"), int):
        return None
    return Position(int(doc["ts_ms"]), str(doc.get("id", "")))


def describe(p: Position) -> str:
    when = dt.datetime.fromtimestamp(p.ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{p.id} at {when[:-3]} UTC"


@dataclass(frozen=True, slots=True)
class Verdict:
    reasons: list[str] = field(default_factory=list)  # why it is a different dataset
    notes: list[str] = field(default_factory=list)  # accepted changes, worth a line

    @property
    def same(self) -> bool:
        return not self.reasons


class AnchorSource(Protocol):
    async def contains(self, anchor: Position) -> bool:
        """Whether the event ``anchor.id`` is in the source at ``anchor.ts_ms`` (±1 s)."""
        ...


async def verify(
    stored: SourceIdentity, current: SourceIdentity, stated_total: int | None, source: AnchorSource
) -> Verdict:
    """Is ``current`` (api, key) still the dataset ``stored`` describes?"""
    reasons: list[str] = []
    notes: list[str] = []
    checked = 0
    for name, anchor in (("newest", stored.newest), ("oldest", stored.oldest)):
        if anchor is None:
            continue
        checked += 1
        if not await source.contains(anchor):
            reasons.append(
                f"the {name} event of the earlier sync ({describe(anchor)}) is not in the source"
            )
    if stated_total is not None and stored.total is not None and stated_total < stored.total:
        reasons.append(
            f"the source states {stated_total:,} events, fewer than the {stored.total:,} "
            "it stated at the last finished sync"
        )
    for what, old, new in (
        ("API", stored.api, current.api),
        ("API key (id)", stored.key_id, current.key_id),
    ):
        if old == new:
            continue
        change = f"the {what} changed from {old or '(none)'} to {new or '(none)'}"
        if checked and not reasons:
            notes.append(f"{change}; the same events are there, so it is the same dataset")
        else:
            reasons.append(change)
    return Verdict(reasons, notes)


def mismatch_error(stored: SourceIdentity, verdict: Verdict) -> SourceMismatch:
    return SourceMismatch(
        "this database holds a sync of a different dataset ("
        + "; ".join(verdict.reasons)
        + f"; synced from {stored.api}). Nothing was fetched. To sync this source, run "
        "`etl ingest --full-refresh` (re-reads everything; loaded rows are kept) or "
        "`etl reset --drop-data --yes` and then `etl ingest` (starts clean)"
    )


def after_sync(
    identity: SourceIdentity, oldest: Position | None, stated_total: int | None
) -> SourceIdentity:
    """The identity after a sync that finished every shard."""
    return replace(
        identity,
        oldest=identity.oldest or oldest,
        total=stated_total if stated_total is not None else identity.total,
        refresh=False,
    )
