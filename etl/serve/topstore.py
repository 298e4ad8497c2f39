"""Top users from memory: each user's hourly rollup rows, read once per data version.

``GET /top/users`` sums ``rollup_user_hours`` over a range for every user and keeps the
largest: on 3M events that is a 100k-row aggregate per distinct range (a quarter of a second
of database time, and clients ask for many ranges). Instead the server holds, per data
version, each user's hours with running sums of events and purchases, and answers a range
with two binary searches per user. The order is ``etl.read.top``'s: the measure descending,
then the other one, then the key ascending (user ids compare as their text, as uuids do in
PostgreSQL); a test compares the two over many ranges. More rows than ``MAX_ROWS``, or more
days x users than ``MAX_CELLS``: the database answers as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
from array import array
from dataclasses import dataclass

from etl.pg import RecoveringPool
from etl.read.series import ceil, floor
from etl.read.top import By, TopList, TopRow
from etl.read.user_hours import UserHour, read_user_hours

MAX_ROWS = 2_000_000
MAX_CELLS = 4_000_000  # days x users of running sums held at most (~64 MB); else the database
HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class UserHours:
    """Users (ascending), each hour's rows (user index, events, purchases) and per-user
    running sums of whole UTC days: ``days[d][u]`` is user u's total before day ``d``."""

    keys: list[str]
    first_hour: float  # epoch seconds
    end_hour: float  # one past the last hour with rows
    day0: float  # the UTC midnight at or before first_hour
    hours: dict[float, tuple[array[int], array[int], array[int]]]
    day_events: list[array[int]]
    day_purchases: list[array[int]]


def index_rows(rows: list[UserHour]) -> UserHours | None:
    """``rows`` (in any order) indexed; None when the day sums would be too large."""
    keys = sorted({r[0] for r in rows})
    if not rows:
        return UserHours([], 0.0, 0.0, 0.0, {}, [array("q")], [array("q")])
    first, last = min(r[1] for r in rows), max(r[1] for r in rows)
    day0 = first - first % DAY
    ndays = int((last - day0) // DAY) + 1
    if (ndays + 1) * len(keys) > MAX_CELLS:
        return None
    at = {k: i for i, k in enumerate(keys)}
    hours: dict[float, tuple[array[int], array[int], array[int]]] = {}
    per_day_e = [array("q", bytes(8 * len(keys))) for _ in range(ndays)]
    per_day_p = [array("q", bytes(8 * len(keys))) for _ in range(ndays)]
    for user, hour, events, purchases in rows:
        u, d = at[user], int((hour - day0) // DAY)
        row = hours.setdefault(hour, (array("i"), array("q"), array("q")))
        row[0].append(u)
        row[1].append(events)
        row[2].append(purchases)
        per_day_e[d][u] += events
        per_day_p[d][u] += purchases
    return UserHours(
        keys, first, last + HOUR, day0, hours, _running(per_day_e), _running(per_day_p)
    )


def _running(per_day: list[array[int]]) -> list[array[int]]:
    out = [array("q", bytes(8 * len(per_day[0])))] if per_day else [array("q")]
    for day in per_day:
        out.append(array("q", map(int.__add__, out[-1], day)))
    return out


def _sums(held: UserHours, lo: float, hi: float) -> tuple[list[int], list[int]]:
    """Per user, events and purchases over the hours in ``[lo, hi)`` (within the data)."""
    ds = lo if lo % DAY == 0 else lo - lo % DAY + DAY  # first whole day
    de = hi - hi % DAY  # end of the last whole day
    n = len(held.keys)
    if ds < de:
        i, j = int((ds - held.day0) // DAY), int((de - held.day0) // DAY)
        ev = list(map(int.__sub__, held.day_events[j], held.day_events[i]))
        pu = list(map(int.__sub__, held.day_purchases[j], held.day_purchases[i]))
        edges = [(lo, ds), (de, hi)]
    else:
        ev, pu, edges = [0] * n, [0] * n, [(lo, hi)]
    for a, b in edges:
        t = a
        while t < b:
            row = held.hours.get(t)
            if row is not None:
                for u, e, p in zip(*row, strict=True):
                    ev[u] += e
                    pu[u] += p
            t += HOUR
    return ev, pu


def top_users(
    held: UserHours, by: By, limit: int, since: dt.datetime | None, until: dt.datetime | None
) -> TopList:
    """What ``etl.read.top.read_top(conn, "users", ...)`` answers, from ``held``."""
    lo = max(held.first_hour, floor(since, "hour").timestamp() if since else held.first_hour)
    hi = min(held.end_hour, ceil(until, "hour").timestamp() if until else held.end_hour)
    if lo >= hi:
        return TopList("users", by, ())
    ev, pu = _sums(held, lo, hi)
    if by == "events":  # a user with rows in the range has events there (rows are never 0)
        found = [(-e, -p, k) for e, p, k in zip(ev, pu, held.keys, strict=True) if e]
    else:
        found = [(-p, -e, k) for e, p, k in zip(ev, pu, held.keys, strict=True) if e]
    rows = tuple(
        TopRow(i, key, -x if by == "events" else -y, -y if by == "events" else -x)
        for i, (x, y, key) in enumerate(heapq.nsmallest(limit, found), start=1)
    )
    return TopList("users", by, rows)


class TopStore:
    """Each user's hours for one data version at a time. Loading them takes a while (100k
    rows), so it runs in the background: until the rows of the current version are held,
    ``users`` answers None and the database answers the question, as without the store."""

    def __init__(self) -> None:
        self._held: tuple[object, UserHours | None] | None = None
        self._loading: asyncio.Task[None] | None = None

    def users(self, db: RecoveringPool, version: object) -> UserHours | None:
        """The rows of ``version`` if held (None: ask the database); starts loading them."""
        if self._held is not None and self._held[0] == version:
            return self._held[1]
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load(db, version))
            self._loading.add_done_callback(_retrieve)
        return None

    async def loaded(self) -> None:
        """Wait for a load in progress, if any (a failure is left to the next request)."""
        if self._loading is not None:
            await asyncio.wait([self._loading])

    async def _load(self, db: RecoveringPool, version: object) -> None:
        async with db.connection() as conn:
            rows = await read_user_hours(conn, cap=MAX_ROWS)
        # in a thread: seconds of indexing on a busy machine must not stop the event loop
        held = await asyncio.to_thread(index_rows, rows) if rows is not None else None
        self._held = (version, held)


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed load (database down) is retried by a later request."""
    if not task.cancelled():
        task.exception()
