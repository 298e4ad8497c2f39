"""One rate budget per API key, shared by every task that uses the key, through PostgreSQL.

Tasks (processes, on any machine) that use the same key must together stay within its
limits and together fill them. Each limiter of ``etl.ratelimit`` (the ``/events``
``TokenBucket``, the feed's ``AdaptiveRate``) keeps its state in one row per (key
fingerprint, lane) of the shared database, and every decision is taken under that row's
lock: the limiter is loaded, asked, and written back in one transaction (``BudgetStore``).
So the key's requests, whichever task sends them, pass through *one* limiter, exactly the
one a single run uses, with its learning: a window or cap learnt from one task's 429, a
``Retry-After``, the server's ``X-RateLimit-*`` count seen by any task, are known to all.

* **Slots, not shares.** A task asks for a start (one per request) and is granted a *slot*
  — a start time on the database's clock — at most ``horizon`` ahead (a fraction of the
  window: 1/30 of /events', 1/100 of the feed's, at most two pacing gaps), or told when to
  ask again. There are no per-task shares to hand back: what a task does not ask for, the
  next one asking gets. A granted slot is a *lease* on one request: a task that dies loses
  only its unused slots, which lapse at their time (``horizon`` at most), so a dead task's
  part of the budget is the others' within ``horizon``.
* **Clock.** Every time in the shared state is the database's (``clock_timestamp()``, or
  the injected ``now`` of a test); a task converts with the offset between the two clocks,
  and sleeps durations on its own clock, so clock skew between machines does not matter
  (drift does not either: a slot is at most ``horizon`` ahead). Each exchange bounds the
  offset from below (the database read its clock before this task read its own, after the
  answer's way back and a busy event loop: 10-25 ms late at the 90th percentile, 107 ms at
  worst in a time-scaled benchmark of 2 tasks): the offset used is the largest of the last
  ``OFFSET_KEPT_S``, so a task's idea of the database's now is not late by its slowest
  exchange. A late one is not harmless: the /events window counted from a request's send
  time (``sync``) would end that much too early, and tokens come back before the server's
  window rolls (a 429).
* **Cost.** One transaction per batch of requests a task is waiting for, and one per batch
  of answers (``on_success``/``on_throttled``/``sync``/pauses are queued and applied at the
  task's next exchange, at once when nothing else is pending): at the DataSync limits
  (~0.17 + ~0.67 requests/s, x10 in the time-scaled sandbox) a handful per second per key.
* **Seam.** ``KeyBudget.events(bucket)`` / ``.feed(rate)`` return subclasses of the
  limiter given (the lanes take them unchanged): their public methods go through the row;
  the decision logic is the limiter's own, run on a virtual clock that jumps, never waits.

The key itself is never stored: ``key_fingerprint`` (HMAC-SHA-256 of API URL and key) names
the budget. Pure logic: the SQL is ``etl.sink.budget``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from etl.errors import EtlError
from etl.identity import api_label
from etl.models import Clock
from etl.ratelimit import AdaptiveRate, TokenBucket

_CONTEXT = b"etl shared rate budget v1"
STALE_S = 600.0  # a budget nobody touched this long starts afresh (a new run's limiter)
GIVE_UP_S = 60.0  # the budget's database unreachable this long: the request fails
_MAX_JUMPS = 10_000
_FLOOR = "slots_granted_up_to"  # slots are granted in time order: never before this
_PROBE = "probe_by"  # [holder, slot, kind] of a probe whose answer the limiter waits for
_BOOK = "holders"  # holder -> [its last ask, its slots not yet due]: the fair share's ledger
ACTIVE_HORIZONS = 10  # a task that asked within this many horizons counts in the share
OFFSET_KEPT_S = 60.0  # the clocks' offset: the best bound of this long (drift: ~ms at most)

T = TypeVar("T")
Alive = Callable[[str], bool]  # whether a holder (a task, ``host:pid``) is still connected
# (new state, slots granted, whether to log that this task asked and had to wait)
Apply = Callable[[str, float, Alive], tuple[str, int, bool]]


def key_fingerprint(api_url: str, api_key: str) -> str:
    """The budget's name: HMAC-SHA-256 of the API and the key (reveals neither)."""
    message = f"{api_label(api_url)}\n{api_key}".encode()
    return hmac.new(_CONTEXT, message, hashlib.sha256).hexdigest()[:32]


class BudgetStore(Protocol):
    holder: str  # this task's name in the shared state (``host:pid``)

    async def exchange(self, key_fp: str, lane: str, fresh: str, apply: Apply) -> None:
        """Under the row's lock: ``apply(state, now, alive)`` -> (new state, slots granted,
        log a wait), written back; the slots granted are logged per task, and a wait (asked,
        and the limiter had no start free at once: refused, or granted only ahead, so the
        budget is booked) as a row of 0 slots. ``state`` is
        ``fresh`` for a new row or one idle past ``STALE_S``; ``now`` is the database's
        clock (epoch seconds) unless the store was given one; ``alive(holder)``: whether
        that task is still connected to the database."""
        ...


class _Later(Exception):
    """A limiter would grant only after the horizon: ask again then."""

    def __init__(self, at: float) -> None:
        super().__init__(at)
        self.at = at


class _Virtual:
    """The clock a limiter decides by inside an exchange: the database's now; ``sleep``
    jumps ahead at once, but not past ``until`` (``_Later``)."""

    def __init__(self, now: float, until: float) -> None:
        self.t = now
        self.until = until
        self.jumps = 0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        at = self.t + max(0.0, seconds)
        self.jumps += 1
        if at > self.until or self.jumps > _MAX_JUMPS:
            raise _Later(at)
        self.t = at


class _View:
    """The database's clock as seen from this task: its own clock plus the offset."""

    def __init__(self, local: Clock) -> None:
        self.local = local
        self.offset = 0.0
        self._bounds: collections.deque[tuple[float, float]] = collections.deque()

    def measured(self, db_now: float) -> None:
        """The database read ``db_now`` at some time before this moment: a lower bound of
        the offset. The offset becomes the best bound of the last ``OFFSET_KEPT_S``."""
        local = self.local.now()
        bound = db_now - local
        bounds = self._bounds
        while bounds and bounds[-1][1] <= bound:  # never the best again
            bounds.pop()
        bounds.append((local, bound))
        while local - bounds[0][0] > OFFSET_KEPT_S:
            bounds.popleft()
        self.offset = bounds[0][1]  # the largest kept

    def now(self) -> float:
        return self.local.now() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.local.sleep(seconds)


def _run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a limiter on a ``_Virtual`` clock)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a limiter waited for real inside a budget exchange")


def dump(limiter: Any) -> str:
    """A limiter's state as JSON (deques tagged; ``paused_until`` on the database's clock)."""
    out: dict[str, Any] = {}
    for name, value in vars(limiter).items():
        if name == "_clock" or name.startswith("_sh_") or isinstance(value, asyncio.Event):
            continue  # this task's own: the clock, the link, events that wake its waiters
        out[name] = {"deque": list(value)} if isinstance(value, collections.deque) else value
    out["paused_until"] = limiter._sh_paused
    out[_FLOOR] = limiter._sh_floor
    out[_PROBE] = limiter._sh_probe
    out[_BOOK] = limiter._sh_book
    return json.dumps(out, separators=(",", ":"))


def load(limiter: Any, text: str) -> None:
    """Adopt a state written by ``dump`` (attributes it lacks keep their value)."""
    for name, value in json.loads(text).items():
        if name == "paused_until":
            limiter._sh_paused = value
        elif name == _FLOOR:
            limiter._sh_floor = value
        elif name == _PROBE:
            limiter._sh_probe = value
        elif name == _BOOK:
            limiter._sh_book = value
        elif isinstance(value, dict) and "deque" in value:
            setattr(limiter, name, collections.deque(value["deque"]))
        else:
            setattr(limiter, name, value)


class _Link:
    """One task's link to the shared state of one limiter: queues this task's requests for
    slots and its feedback, and settles both in one exchange at a time."""

    def __init__(
        self, limiter: _Shared, store: BudgetStore, key_fp: str, lane: str, clock: Clock
    ) -> None:
        self.limiter = limiter
        self.store = store
        self.key_fp = key_fp
        self.lane = lane
        self.view = _View(clock)
        self.holder = store.holder
        self.fresh = dump(limiter)
        self.requests: list[asyncio.Future[tuple[bool, float]]] = []
        self.feedback: list[Callable[[], None]] = []
        self.granted = 0  # slots granted to this task
        self.exchanges = 0
        self._refusal_logged = float("-inf")  # the log gets one wait per horizon at most
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._clock: Any = self.view  # what the limiter's logic reads time from

    # -- what the limiter's methods do --------------------------------------------------
    async def slot(self) -> float:
        """Wait for a start; returns its time on the database's clock (the ticket)."""
        failing_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[tuple[bool, float]] = loop.create_future()
            self.requests.append(fut)
            self._kick()
            try:
                granted, at = await fut
            except EtlError:
                now = self.view.local.now()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > GIVE_UP_S:
                    raise
                await self.view.local.sleep(1.0)
                continue
            failing_since = None
            wait = at - self.view.now()
            if granted:
                if wait > 0:
                    await self.view.sleep(wait)
                return at
            await self.view.sleep(max(wait, 0.001))

    def queue(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to the shared state at the next exchange (soon)."""
        self.feedback.append(change)
        self._kick()

    @contextlib.contextmanager
    def inside(self, clock: Any) -> Iterator[None]:
        """The limiter's own logic runs on ``clock`` and reads the shared (database) times."""
        lim = self.limiter
        lim._clock, lim._sh_inside = clock, True
        try:
            yield
        finally:
            lim._clock, lim._sh_inside = self.view, False

    # -- the exchange ------------------------------------------------------------------
    def _kick(self) -> None:
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"budget-{self.lane}")

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            wanted = [f for f in self.requests if not f.done()]
            self.requests = []
            feedback, self.feedback = self.feedback, []
            if not wanted and not feedback:
                continue
            try:
                results = await self.settle(feedback, len(wanted))
            except EtlError as exc:
                self.feedback[:0] = feedback  # applied with the next exchange that works
                self._fail(wanted, exc)
                continue
            except Exception as exc:  # a bug: the waiters fail with it, never hang
                self._fail(wanted, exc)
                continue
            for fut, result in zip(wanted, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    @staticmethod
    def _fail(wanted: list[asyncio.Future[tuple[bool, float]]], exc: Exception) -> None:
        for fut in wanted:
            if not fut.done():
                fut.set_exception(exc)

    async def settle(
        self, feedback: list[Callable[[], None]], wanted: int
    ) -> list[tuple[bool, float]]:
        """One exchange: apply ``feedback`` in order, then ask for ``wanted`` slots. Each
        result is (granted, slot time) or (False, when to ask again); database times."""
        results: list[tuple[bool, float]] = []

        def apply(state: str, now: float, alive: Alive) -> tuple[str, int, bool]:
            results.clear()
            lim = self.limiter
            self.view.measured(now)
            load(lim, state)
            with self.inside(_Virtual(now, now)):
                for change in feedback:
                    change()
                lim._sh_lost_probe(now, lambda holder: holder == self.holder or alive(holder))
            horizon = lim._sh_horizon()
            mine = self._ledger(lim, now, horizon, alive)
            share = max(1, math.ceil(lim._sh_per_horizon(horizon) / len(lim._sh_book)))
            booked = False  # the limiter had no start free now (none, or only ahead)
            for _ in range(wanted):
                if len(mine) >= share:  # its fair part is booked: again when one is due
                    again = max(min(mine), now + 0.001)
                    results.extend([(False, again)] * (wanted - len(results)))
                    break
                before = dump(lim)
                # a slot granted ahead (another task's, or this exchange's) has moved the
                # limiter on to its time: the next one is not granted before it
                clock = _Virtual(max(now, lim._sh_floor), now + horizon)
                try:
                    with self.inside(clock):
                        _run_now(lim._sh_acquire())
                except _Later as later:
                    load(lim, before)
                    booked = True
                    again = max(later.at - horizon / 2, now + horizon / 4)
                    results.extend([(False, again)] * (wanted - len(results)))
                    break
                lim._sh_floor = clock.t
                lim._sh_granted(clock.t, self.holder)
                if clock.t > now:
                    mine.append(clock.t)
                    booked = True  # this task waits for the budget: nothing of it is unused
                results.append((True, clock.t))
            granted = sum(1 for ok, _ in results if ok)
            # logged when the budget itself was booked (not this task's fair part alone)
            waited = booked and now - self._refusal_logged >= horizon
            if waited:
                self._refusal_logged = now
            return dump(lim), granted, waited

        await self.store.exchange(self.key_fp, self.lane, self.fresh, apply)
        self.exchanges += 1
        self.granted += sum(1 for ok, _ in results if ok)
        return list(results)

    def _ledger(self, lim: _Shared, now: float, horizon: float, alive: Alive) -> list[float]:
        """The slots not yet due of this task (a list kept in the shared state), after
        forgetting the tasks gone or that asked no more within ``ACTIVE_HORIZONS``: the share
        is the slots of one horizon divided among the tasks asking. A task alone may take
        them all; tasks that all want more each hold at most their part ahead, so one with
        many requests waiting (a bigger in-flight limit) no longer books what a task just
        restarted asks for."""
        book = lim._sh_book
        for holder in list(book):
            asked, slots = book[holder]
            if holder != self.holder and (
                now - asked > ACTIVE_HORIZONS * horizon or not alive(holder)
            ):
                del book[holder]
            else:
                book[holder] = [asked, [t for t in slots if t > now]]
        entry = book.setdefault(self.holder, [now, []])
        entry[0] = now
        ahead: list[float] = entry[1]
        return ahead

    async def close(self) -> None:
        """Hand the queued feedback in (what this task learnt stays known), stop the worker."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, EtlError):
                await worker
        for fut in self.requests:
            fut.cancel()
        with contextlib.suppress(EtlError):
            await self.flush()

    async def flush(self) -> None:
        """Apply the queued feedback now."""
        feedback, self.feedback = self.feedback, []
        if feedback:
            await self.settle(feedback, 0)


class _Shared:
    """What both shared limiters add: the link, and ``paused_until`` on two clocks (the
    database's inside the limiter's logic, this task's own for the lanes)."""

    _clock: Any
    _sh_link: _Link
    _sh_paused: float
    _sh_inside: bool
    _sh_floor: float
    _sh_probe: list[Any] | None
    _sh_book: dict[str, list[Any]]

    @property
    def paused_until(self) -> float:
        if self._sh_inside:
            return self._sh_paused
        return self._sh_paused - self._sh_link.view.offset

    @paused_until.setter
    def paused_until(self, value: float) -> None:
        if self._sh_inside:
            self._sh_paused = value
            return
        at = value + self._sh_link.view.offset  # a lane's time (e.g. a feed Retry-After)
        self._sh_paused = max(self._sh_paused, at)
        self._sh_link.queue(lambda: self._raise_pause(at))

    def _raise_pause(self, at: float) -> None:
        self._sh_paused = max(self._sh_paused, at)

    def _sh_horizon(self) -> float:
        raise NotImplementedError

    def _sh_acquire(self) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def _sh_per_horizon(self, horizon: float) -> float:
        """How many starts the limiter grants within one horizon (the fair shares' sum)."""
        raise NotImplementedError

    def _sh_granted(self, at: float, holder: str) -> None:
        """A start at ``at`` went to ``holder`` (noted when the limiter waits for its answer)."""

    def _sh_lost_probe(self, now: float, alive: Alive) -> None:
        """Stop waiting for the answer of a task that is gone (SIGKILL, a lost machine)."""

    @property
    def link(self) -> _Link:
        return self._sh_link


def _adopt(cls: Any, limiter: Any, store: BudgetStore, key_fp: str, lane: str) -> Any:
    obj = cls.__new__(cls)
    state = dict(vars(limiter))
    clock = state.pop("_clock")
    obj._sh_paused = state.pop("paused_until")
    obj._sh_inside = False
    obj._sh_floor = float("-inf")
    obj._sh_probe = None
    obj._sh_book = {}
    obj.__dict__.update(state)
    obj._sh_link = _Link(obj, store, key_fp, lane, clock)
    obj._clock = obj._sh_link.view
    obj._sh_link.fresh = dump(obj)
    return obj


class SharedTokenBucket(_Shared, TokenBucket):
    """The /events fixed window, one for every task on the key."""

    def _sh_horizon(self) -> float:
        return self.window_length_s / 30

    def _sh_acquire(self) -> Coroutine[Any, Any, None]:
        return TokenBucket.acquire(self)

    def _sh_per_horizon(self, horizon: float) -> float:
        return float(self.limit)  # a window's tokens come at once (only slots ahead count)

    async def acquire(self) -> None:
        await self._sh_link.slot()

    def ticket(self) -> float | None:
        """None: a grant comes from the database's window, not this bucket's (no ticket)."""
        return None

    def ready(self) -> bool:
        with self._sh_link.inside(self._sh_link.view):
            return TokenBucket.ready(self)

    def sync(
        self, limit: int, remaining: int, reset_s: float, *, sent_at: float | None = None
    ) -> None:
        # ``sent_at`` is on this task's clock: on the database's from here on
        sent = None if sent_at is None else sent_at + self._sh_link.view.offset
        self._sh_link.queue(lambda: TokenBucket.sync(self, limit, remaining, reset_s, sent_at=sent))

    def pause_until(self, t: float) -> None:
        """No token before this task's clock time ``t``, for any task."""
        self.paused_until = t

    def pause_for(self, seconds: float) -> None:
        self.paused_until = self._sh_link.view.local.now() + max(0.0, seconds)


class SharedAdaptiveRate(_Shared, AdaptiveRate):
    """The feed's learnt throttle (window, cap, pacing), one for every task on the key."""

    def _sh_horizon(self) -> float:
        return min(self.window_s / 100, max(0.05, 2 / self.rate_per_s))

    def _sh_acquire(self) -> Coroutine[Any, Any, float]:
        return AdaptiveRate.acquire(self)

    def _sh_per_horizon(self, horizon: float) -> float:
        return horizon * self.rate_per_s

    async def acquire(self) -> float:
        return await self._sh_link.slot()

    def ready(self) -> bool:
        with self._sh_link.inside(self._sh_link.view):
            return AdaptiveRate.ready(self)

    async def _sleep(self, seconds: float) -> None:
        # inside an exchange, on the virtual clock: a jump, never a wait for this task's
        # event (the link's waiters ask again when the window is learnt)
        await self._clock.sleep(seconds)

    def _sh_granted(self, at: float, holder: str) -> None:
        if self._probe_out == at:  # the checkpoint probe: every other start waits for it
            self._sh_probe = [holder, at, "checkpoint"]
        elif self._probing_since is not None and self._span_probes:
            self._sh_probe = [holder, at, "span"]  # the next probe waits a step

    def _sh_lost_probe(self, now: float, alive: Alive) -> None:
        """A probe's answer is what the feed's learning waits for; a task killed with its
        probe out never gives it. The checkpoint probe held every start for up to three
        round trips (8 s of a time-scaled run's 3 s pages, stalled for all tasks), and a
        lost span probe put the window's learning a step (30 %) later: both are let go
        as soon as the database has seen the task's connections close."""
        probe = self._sh_probe
        if probe is None:
            return
        holder, at, kind = probe
        if kind == "checkpoint":
            waiting = self._probe_out == at
        else:
            waiting = self._probing_since is not None and self._last_refused < at
        if waiting and alive(holder):
            return
        self._sh_probe = None
        if not waiting:
            return  # answered (or the limiter moved on)
        if kind == "checkpoint":
            self._probe_out = None  # as if lost: the starts go on (the next checkpoint later)
        else:
            self._probe_at = min(self._probe_at, now)  # probe again now, not a step later

    def on_success(self, started_at: float | None = None) -> None:
        self._sh_link.queue(lambda: AdaptiveRate.on_success(self, started_at))

    def on_throttled(self, started_at: float | None = None) -> None:
        self._sh_link.queue(lambda: AdaptiveRate.on_throttled(self, started_at))


class KeyBudget:
    """The limiters of one key, shared through ``store``: wraps what ``DataSyncSource``
    builds (``events``/``feed``); ``close()`` hands in what is still queued."""

    def __init__(self, store: BudgetStore, key_fp: str) -> None:
        self.store = store
        self.key_fp = key_fp
        self.links: dict[str, _Link] = {}

    def events(self, bucket: TokenBucket) -> TokenBucket:
        shared: SharedTokenBucket = _adopt(
            SharedTokenBucket, bucket, self.store, self.key_fp, "events"
        )
        self.links["events"] = shared.link
        return shared

    def feed(self, rate: AdaptiveRate) -> AdaptiveRate:
        shared: SharedAdaptiveRate = _adopt(
            SharedAdaptiveRate, rate, self.store, self.key_fp, "feed"
        )
        self.links["feed"] = shared.link
        return shared

    def describe(self) -> str:
        lanes = " and ".join(sorted(self.links)) or "no lane"
        return f"rate budget shared with every task on this key ({lanes}, key {self.key_fp[:8]}…)"

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
