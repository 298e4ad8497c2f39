"""``POST /events``' inserts committed in groups: the requests that arrive while one
transaction runs go into the next one together.

Every insert also adds to the rollups, and events posted at the same time land in the same
rows (the hour and type of ``rollup_hourly``, the pages of ``rollup_page_hours``, the
``posted_totals`` counter): concurrent transactions wait on those rows' locks one after the
other, each holding them through its commit. So a worker runs one insert at a time, of
every request that arrived meanwhile (up to ``max_events``): the per-transaction costs (the
purge rules, the rollup upserts, the commit's WAL flush) are paid once per group instead of
once per request, and concurrent requests no longer queue on each other's row locks.

Each request still gets its own answer: its events are reported ``created`` when the group
inserted them and this request was the first of the group to send that id (a later request
of the same group sending the same id is told ``present``, as it would have been a moment
later), ``purged`` when a blocking purge removed them, ``present`` otherwise. A group the
database refuses is retried request by request, so one bad request fails alone; without a
connection (the database down or busy) every request of the group gets the error (503).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from etl.errors import SinkError
from etl.models import Record
from etl.pg import RecoveringPool
from etl.sink.single import InsertResult, insert_events

MAX_EVENTS = 5000  # events per transaction at most (a request is never split)


@dataclass(slots=True)
class _Pending:
    records: list[Record]
    answer: asyncio.Future[InsertResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def split(group: list[list[Record]], done: InsertResult) -> list[InsertResult]:
    """The group's result, per request (``group``: each request's records, in arrival order)."""
    first: dict[str, int] = {}
    for k, records in enumerate(group):
        for r in records:
            first.setdefault(r[0], k)
    out = []
    for k, records in enumerate(group):
        ids = {r[0] for r in records}
        created = frozenset(i for i in ids & done.created if first[i] == k)
        purged = frozenset(ids & done.purged)
        out.append(InsertResult(created, frozenset(ids - created - purged), 0, purged))
    return out


def _union(group: list[list[Record]]) -> list[Record]:
    """Every record of the group once (the first copy of an id)."""
    seen: dict[str, Record] = {}
    for records in group:
        for r in records:
            seen.setdefault(r[0], r)
    return list(seen.values())


class PostGroups:
    """One insert at a time per worker, of every request waiting (``insert``)."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._waiting: list[_Pending] = []
        self._runner: asyncio.Task[None] | None = None

    async def insert(self, db: RecoveringPool, records: list[Record]) -> InsertResult:
        """Insert ``records`` (distinct ids, valid) with the other requests waiting; what
        happened to them. Raises SinkError as ``insert_events`` on a pool connection would."""
        pending = _Pending(records)
        self._waiting.append(pending)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(db))
        return await pending.answer

    def _take(self) -> list[_Pending]:
        n, total = 0, 0
        for p in self._waiting:
            if n and total + len(p.records) > self.max_events:
                break
            n, total = n + 1, total + len(p.records)
        group, self._waiting = self._waiting[:n], self._waiting[n:]
        return group

    async def _run(self, db: RecoveringPool) -> None:
        while self._waiting:
            group = self._take()
            try:
                await self._commit(db, group)
            except asyncio.CancelledError:  # shut down: nobody waits forever
                for p in [*group, *self._waiting]:
                    p.answer.cancel()
                self._waiting = []
                raise
            except Exception as exc:  # unexpected: these requests fail (500), the next go on
                for p in group:
                    _settle(p, exc)

    async def _commit(self, db: RecoveringPool, group: list[_Pending]) -> None:
        batches = [p.records for p in group]
        connected = False
        try:
            async with db.connection() as conn:
                connected = True
                done = await insert_events(conn, _union(batches), [])
        except SinkError as exc:
            if len(group) == 1 or not connected:  # no connection (down, busy): all fail
                for p in group:
                    _settle(p, exc)
                return
            for p in group:  # one request the database refuses must not fail the others
                await self._commit(db, [p])
            return
        for p, result in zip(group, split(batches, done), strict=True):
            _settle(p, result)


def _settle(p: _Pending, outcome: InsertResult | BaseException) -> None:
    if p.answer.done():  # its request was cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        p.answer.set_exception(outcome)
    else:
        p.answer.set_result(outcome)
