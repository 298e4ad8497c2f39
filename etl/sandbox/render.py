"""Events to JSON text, fast: one f-string per event from precomputed session pieces.

The hot path (static events, no chaos) avoids dicts entirely; live events, invalid events
and missing-field chaos go through ``Dataset.event`` and msgspec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from etl.sandbox.dataset import CHUNK, EVENT_TYPES, NAME3, SESSIONS_PER_CHUNK, Dataset
from etl.sandbox.tsformat import Stamp

_M32 = 0xFFFFFFFF
_A1, _A2 = 0x9E3779B1, 0x85EBCA6B
_VARIANT = {h: "89ab"[int(h, 16) & 3] for h in "0123456789abcdef"}
_ENCODE = msgspec.json.Encoder().encode
BAD_TIMESTAMP = '"not-a-timestamp"'


class Renderer:
    def __init__(self, dataset: Dataset) -> None:
        self.ds = dataset
        self._pieces: dict[int, tuple[str, str]] = {}

    def pieces(self, s: int) -> tuple[str, str]:
        """JSON around an event's own fields: (sessionId..type opening, session object)."""
        got = self._pieces.get(s)
        if got is None:
            info = self.ds.session_info(s)
            got = (
                f'","sessionId":"{info.id}","userId":"{info.user_id}","type":"',
                f',"session":{{"id":"{info.id}","deviceType":"{info.device_type}",'
                f'"browser":"{info.browser}"}}}}',
            )
            if len(self._pieces) > 300_000:
                self._pieces.clear()
            self._pieces[s] = got
        return got

    def events(
        self,
        positions: Sequence[int],
        live: int,
        stamp: Stamp,
        *,
        by_page: bool = True,
        invalid_share: float = 0.0,
    ) -> list[str]:
        """JSON text of the events at ``positions``; ``stamp`` indexed by page position
        (``by_page``) or by event number."""
        ds = self.ds
        if live or invalid_share > 0:
            return [
                self.generic(
                    p,
                    live,
                    stamp(i if by_page else ds.j_at(p, live), ds.ts_at(p, live)),
                    invalid=ds.invalid(ds.j_at(p, live), invalid_share),
                )
                for i, p in enumerate(positions)
            ]
        out: list[str] = []
        append = out.append
        perm_get = ds._perm.get
        ts_arr, types, slots = ds.ts, ds.types, ds.slots
        key, k32 = ds._key, ds._k32
        blake = hashlib.blake2b
        pieces_get, pieces = self._pieces.get, self.pieces
        names = EVENT_TYPES
        n3 = NAME3
        var = _VARIANT
        for i, q in enumerate(positions):
            j = perm_get(q, q)
            hx = blake(j.to_bytes(8, "little"), digest_size=16, key=key).hexdigest()
            x = (j * _A1 + k32) & _M32
            x ^= x >> 15
            x = (x * _A2) & _M32
            x ^= x >> 13
            s = (q // CHUNK) * SESSIONS_PER_CHUNK + slots[q]
            pc = pieces_get(s) or pieces(s)
            n = int(hx[:8], 16)
            append(
                f'{{"id":"{x:08x}-{hx[8:12]}-4{hx[13:16]}-{var[hx[16]]}{hx[17:20]}-{hx[20:32]}'
                f'{pc[0]}{names[types[q]]}","name":"event_{n3[n % 46656]}{n3[(n // 46656) % 46656]}'
                f'","properties":{{"page":"/home"}},"timestamp":'
                f"{stamp(i if by_page else j, ts_arr[q])}{pc[1]}"
            )
        return out

    def generic(
        self, p: int, live: int, ts_text: str, *, invalid: int = 0, drop: tuple[str, ...] = ()
    ) -> str:
        """One event through a dict: ``invalid`` 1 = unparseable timestamp, 2 = no id;
        ``drop`` removes fields (missing-fields chaos)."""
        event = self.ds.event(p, live)
        event["timestamp"] = msgspec.Raw(BAD_TIMESTAMP if invalid == 1 else ts_text)
        if invalid == 2:
            del event["id"]
        for name in drop:
            event.pop(name, None)
        return _ENCODE(event).decode()
