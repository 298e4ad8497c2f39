"""A deterministic DataSync dataset, derivable event by event without materialising it.

Memory: one ``array('q')`` of timestamps (8 B/event) plus two 1-byte-per-event buffers
(type code, session slot); ids, names and sessions are derived on demand from keyed hashes.
At 3,000,000 events that is about 30 MB and well under a second to build.

Order (the API's): timestamp DESC, then id DESC. *Position* ``p`` is an index in that order;
with ``live`` events appended at the head (``--live-rate``), positions ``0..live-1`` are the
live events (newest first) and ``live + q`` is static event ``q``.

Identity: every event has a number ``j`` (static: ``0..N-1``, live: ``N + k``). Its id is
``enc32(j)`` (a keyed 32-bit bijection) followed by 90 hashed bits, formatted as a UUID v4,
so an id maps back to its event in O(1) (``lookup``). Ties (``tie_fraction`` of neighbours
share a timestamp) are ordered by id DESC through a small permutation.

Sessions: static events are cut into chunks of ``CHUNK`` consecutive events (about an hour
at the real density); each chunk holds ``SESSIONS_PER_CHUNK`` sessions and every event draws
one of them, so a session keeps ~50 events inside its chunk's window, with one user, device
and browser. (At a sparser density than the real one, a chunk spans more than an hour.)
"""

from __future__ import annotations

import hashlib
import math
import operator
import random
from array import array
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, compress, count, islice

from etl.sandbox.config import SandboxConfig

EVENT_TYPES = (
    "page_view",
    "click",
    "api_call",
    "form_submit",
    "scroll",
    "purchase",
    "error",
    "video_play",
)
_TYPE_SHARES = (90, 64, 26, 25, 13, 13, 13, 12)  # of 256: 35/25/10/10/5/5/5/5 %
TYPE_TABLE = bytes(code for code, n in enumerate(_TYPE_SHARES) for _ in range(n))
DEVICE_TYPES = ("mobile", "tablet", "desktop")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")
OSES = {
    "mobile": ("Android", "iOS"),
    "tablet": ("iPadOS", "Android"),
    "desktop": ("Windows", "macOS", "Linux"),
}
COUNTRIES = ("US", "CA", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "ES")
FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry", "ivy", "jack")
DOMAINS = ("acme.com", "appmakers.com", "datainc.com", "devops.com")
CHUNK = 4000
SESSIONS_PER_CHUNK = 80
EVENTS_PER_LIVE_SESSION = 50
_M32 = 0xFFFFFFFF
_A1, _A2 = 0x9E3779B1, 0x85EBCA6B
_A1_INV, _A2_INV = pow(_A1, -1, 1 << 32), pow(_A2, -1, 1 << 32)
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
NAME3 = tuple(a + b + c for a in _B36 for b in _B36 for c in _B36)  # 46,656 triples
_VARIANT = {h: "89ab"[int(h, 16) & 3] for h in "0123456789abcdef"}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    index: int
    id: str
    user_index: int
    user_id: str
    device_type: str
    browser: str
    os: str
    ip_address: str
    country: str
    city: str


class Dataset:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.size = n = config.events
        self.seed = config.seed
        self._key = hashlib.blake2b(
            f"datasync-sandbox:{config.seed}".encode(), digest_size=32
        ).digest()
        self._k32 = int.from_bytes(self._key[:4], "little")
        rnd = random.Random(config.seed)
        self.ts = _timestamps(rnd, n, config)
        self.newest_ts = self.ts[0]
        self.oldest_ts = self.ts[n - 1]
        self.types = rnd.randbytes(n).translate(TYPE_TABLE)
        full, rest = divmod(n, CHUNK)
        slots = rnd.randbytes(full * CHUNK).translate(
            bytes(b % SESSIONS_PER_CHUNK for b in range(256))
        )
        self.last_chunk_sessions = max(1, math.ceil(rest / EVENTS_PER_LIVE_SESSION)) if rest else 0
        if rest:
            table = bytes(b % self.last_chunk_sessions for b in range(256))
            slots += rnd.randbytes(rest).translate(table)
        self.slots = slots
        self.static_sessions = full * SESSIONS_PER_CHUNK + self.last_chunk_sessions
        self.users = max(1, n // 1000)
        self._perm, self._inv = self._tie_permutation()
        self.session_info = lru_cache(maxsize=200_000)(self._session_info)
        self.user_info = lru_cache(maxsize=50_000)(self._user_info)
        self._live_anchor = self.newest_ts + 1
        self._session_ids: dict[str, int] | None = None
        self._live_start = 0

    # -- identity ----------------------------------------------------------------------
    def enc32(self, j: int) -> int:
        x = (j * _A1 + self._k32) & _M32
        x ^= x >> 15
        x = (x * _A2) & _M32
        return x ^ (x >> 13)

    def dec32(self, x: int) -> int:
        x ^= (x >> 13) ^ (x >> 26)
        x = (x * _A2_INV) & _M32
        x ^= (x >> 15) ^ (x >> 30)
        return ((x - self._k32) * _A1_INV) & _M32

    def digest_hex(self, j: int) -> str:
        return hashlib.blake2b(j.to_bytes(8, "little"), digest_size=16, key=self._key).hexdigest()

    def event_id(self, j: int) -> str:
        hx = self.digest_hex(j)
        return (
            f"{self.enc32(j):08x}-{hx[8:12]}-4{hx[13:16]}-{_VARIANT[hx[16]]}{hx[17:20]}-{hx[20:32]}"
        )

    def event_name(self, j: int) -> str:
        n = int(self.digest_hex(j)[:8], 16)
        return "event_" + NAME3[n % 46656] + NAME3[(n // 46656) % 46656]

    def j_at(self, p: int, live: int = 0) -> int:
        if p < live:
            return self.size + live - 1 - p
        q = p - live
        return self._perm.get(q, q)

    def lookup(self, event_id: str, live: int = 0) -> int | None:
        """The position of ``event_id`` (with ``live`` live events), or None."""
        if len(event_id) != 36:
            return None
        try:
            j = self.dec32(int(event_id[:8], 16))
        except ValueError:
            return None
        if j < self.size:
            p = live + self._inv.get(j, j)
        elif j < self.size + live:
            p = self.size + live - 1 - j
        else:
            return None
        return p if self.event_id(j) == event_id else None

    # -- time ----------------------------------------------------------------------------
    def live_ts(self, k: int) -> int:
        """Timestamp of live event ``k`` (0 = the first to appear)."""
        return self._live_anchor + math.floor(k * 1000 / self.config.live_rate)

    def start_live(self, now_ms: int) -> None:
        """Anchor the live head: live event k appears at ``anchor + k/rate``."""
        self._live_anchor = max(now_ms, self.newest_ts + 1)
        self._live_start = now_ms

    def live_count(self, now_ms: int) -> int:
        rate = self.config.live_rate
        if rate <= 0:
            return 0
        elapsed = now_ms - self._live_start
        return 0 if elapsed < 0 else min(int(elapsed * rate / 1000) + 1, 2**32 - 1 - self.size)

    def ts_at(self, p: int, live: int = 0) -> int:
        if p < live:
            return self.live_ts(live - 1 - p)
        return self.ts[p - live]

    def first_at_or_below(self, ts: int, live: int = 0) -> int:
        """The first position whose timestamp is <= ``ts``."""
        if live and ts >= self.live_ts(0):
            k = min(live - 1, self._live_k_at_or_below(ts))
            return live - 1 - k
        lo, hi, arr = 0, self.size, self.ts
        while lo < hi:
            mid = (lo + hi) // 2
            if arr[mid] > ts:
                lo = mid + 1
            else:
                hi = mid
        return live + lo

    def _live_k_at_or_below(self, ts: int) -> int:
        k = max(0, math.floor((ts - self._live_anchor) * self.config.live_rate / 1000))
        while self.live_ts(k + 1) <= ts:
            k += 1
        while k > 0 and self.live_ts(k) > ts:
            k -= 1
        return k

    def after(self, ts: int, event_id: str, live: int = 0) -> int:
        """The first position strictly after ``(ts, event_id)`` in (ts DESC, id DESC) order."""
        p = self.first_at_or_below(ts, live)
        end = self.size + live
        while (
            p < end and self.ts_at(p, live) == ts and self.event_id(self.j_at(p, live)) >= event_id
        ):
            p += 1
        return p

    # -- attributes ------------------------------------------------------------------------
    def type_code(self, p: int, live: int = 0) -> int:
        if p < live:
            return TYPE_TABLE[int(self.digest_hex(self.j_at(p, live))[20:22], 16)]
        return self.types[p - live]

    def session_index(self, p: int, live: int = 0) -> int:
        if p < live:
            k = live - 1 - p
            return self.static_sessions + k // EVENTS_PER_LIVE_SESSION
        q = p - live
        return (q // CHUNK) * SESSIONS_PER_CHUNK + self.slots[q]

    def _session_info(self, s: int) -> SessionInfo:
        h = hashlib.blake2b(b"s" + s.to_bytes(8, "little"), digest_size=32, key=self._key).digest()
        u = int.from_bytes(h[16:20], "little") % self.users
        device = DEVICE_TYPES[h[20] % 3]
        oses = OSES[device]
        return SessionInfo(
            index=s,
            id=_uuid(h[:16]),
            user_index=u,
            user_id=self._user_info(u)[0],
            device_type=device,
            browser=BROWSERS[h[21] % 4],
            os=oses[h[22] % len(oses)],
            ip_address=f"{h[23] % 223 + 1}.{h[24]}.{h[25]}.{h[26] % 254 + 1}",
            country=COUNTRIES[h[27] % len(COUNTRIES)],
            city=f"City{h[28] % 50}",
        )

    def session_by_id(self, session_id: str) -> int | None:
        """The index of a static session by its id (the map is built on first use)."""
        if self._session_ids is None:
            self._session_ids = {self._session_info(s).id: s for s in range(self.static_sessions)}
        return self._session_ids.get(session_id)

    def _user_info(self, u: int) -> tuple[str, str, str]:
        """(id, name, email) of user ``u``."""
        h = hashlib.blake2b(b"u" + u.to_bytes(8, "little"), digest_size=16, key=self._key).digest()
        return _uuid(h), f"{FIRST_NAMES[u % len(FIRST_NAMES)]} {u}", f"user{u}@{DOMAINS[u % 4]}"

    # -- helpers for tests and submissions -----------------------------------------------
    def total(self, live: int = 0) -> int:
        return self.size + live

    def ids(self, live: int = 0) -> list[str]:
        """Every event id in API order (newest first)."""
        return [self.event_id(self.j_at(p, live)) for p in range(self.size + live)]

    def timestamps(self, live: int = 0) -> list[int]:
        """Every event's true timestamp (epoch ms) in API order."""
        return [self.ts_at(p, live) for p in range(self.size + live)]

    def type_counts(self) -> dict[str, int]:
        return {name: self.types.count(bytes([code])) for code, name in enumerate(EVENT_TYPES)}

    def event(self, p: int, live: int = 0) -> dict[str, object]:
        """The event at position ``p`` with its true epoch-ms timestamp."""
        j = self.j_at(p, live)
        s = self.session_info(self.session_index(p, live))
        return {
            "id": self.event_id(j),
            "sessionId": s.id,
            "userId": s.user_id,
            "type": EVENT_TYPES[self.type_code(p, live)],
            "name": self.event_name(j),
            "properties": {"page": "/home"},
            "timestamp": self.ts_at(p, live),
            "session": {"id": s.id, "deviceType": s.device_type, "browser": s.browser},
        }

    def poisoned(self, j: int, share: float) -> bool:
        """True when event ``j`` is always served as broken JSON (``poison_events``)."""
        return share > 0 and int(self.digest_hex(j)[28:32], 16) / 16**4 < share

    def invalid(self, j: int, share: float) -> int:
        """0 when event ``j`` is served valid; 1 = bad timestamp, 2 = no id (``invalid_events``)."""
        if share <= 0:
            return 0
        v = int(self.digest_hex(j)[22:28], 16) / 16**6
        if v >= share:
            return 0
        return 1 if v < share / 2 else 2

    def _tie_permutation(self) -> tuple[dict[int, int], dict[int, int]]:
        ts = self.ts
        ties = list(compress(count(), map(operator.eq, ts, islice(ts, 1, None))))
        perm: dict[int, int] = {}
        i = 0
        while i < len(ties):
            start = ties[i]
            end = start + 1
            while i + 1 < len(ties) and ties[i + 1] == end:
                i += 1
                end += 1
            i += 1
            group = sorted(range(start, end + 1), key=self.enc32, reverse=True)
            for q, j in zip(range(start, end + 1), group, strict=True):
                if q != j:
                    perm[q] = j
        return perm, {j: q for q, j in perm.items()}


def _uuid(b: bytes) -> str:
    hx = b.hex()
    return f"{hx[:8]}-{hx[8:12]}-4{hx[13:16]}-{_VARIANT[hx[16]]}{hx[17:20]}-{hx[20:32]}"


def _timestamps(rnd: random.Random, n: int, config: SandboxConfig) -> array[int]:
    """Descending timestamps: exponential gaps averaging span/n, ``tie_fraction`` zero gaps."""
    mean = config.span_days * 86_400_000 / n
    cut = round(config.tie_fraction * 65536)
    table = [
        0 if u < cut else max(1, round(-mean * math.log(1 - (u + 0.5) / 65536)))
        for u in range(65536)
    ]
    gaps = array("H")
    gaps.frombytes(rnd.randbytes(2 * (n - 1)))
    return array(
        "q", accumulate(map(table.__getitem__, gaps), operator.sub, initial=config.newest_ts_ms)
    )
