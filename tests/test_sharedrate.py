"""The rate budget shared through PostgreSQL by the tasks on one API key (etl.sharedrate):
two "tasks" (two budgets, two holders) on one real database, the time injected (the store's
``now`` is the test's clock, never the database's): they never exceed the key's limits
together, a task that stops asking leaves its part to the other within the horizon, and
what one learns (a Retry-After, a throttle's cap) the other obeys; `etl status` shows it."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time

import asyncpg
from rich.console import Console

from etl.clock import FakeClock
from etl.display import render_status
from etl.ratelimit import AdaptiveRate, TokenBucket
from etl.read.status import read_status
from etl.read.views import snapshot_to_json
from etl.sharedrate import KeyBudget, key_fingerprint
from etl.sink.budget import PgBudgetStore
from etl.sink.postgres import PostgresSink

KEY = "ds_0123456789abcdef0123456789abcdef"
URL = "http://127.0.0.1:9/api/v1"


def task(db_url: str, clock: FakeClock, name: str) -> tuple[KeyBudget, PgBudgetStore]:
    store = PgBudgetStore(db_url, holder=name, now=clock.now)
    return KeyBudget(store, key_fingerprint(URL, KEY)), store


def paced(clock: FakeClock, per_s: float = 1.0) -> AdaptiveRate:
    """A feed limiter pacing ``per_s`` starts a second (no answers: it does not grow)."""
    return AdaptiveRate(per_s, clock, window_s=300.0, learn_window=False)


async def test_a_task_that_stops_asking_leaves_its_part_to_the_other_within_the_horizon(
    sink: PostgresSink, db_url: str
) -> None:
    """Two tasks share a feed paced at 1 start/s: together one start a second, each some;
    when A stops (as if killed, its slots unused), B has every start from A's last slot
    on, at most one horizon (2 s here) after A's last request."""
    clock = FakeClock(autojump=False)
    (a, sa), (b, sb) = task(db_url, clock, "A"), task(db_url, clock, "B")
    a.feed(paced(clock))
    b.feed(paced(clock))
    slots: dict[str, list[float]] = {"A": [], "B": []}
    try:
        rng = random.Random(7)
        for _ in range(80):  # 40 s, both asking every 0.5 s (in random order); A stops at 20 s
            order = rng.sample([("A", a), ("B", b)], 2)
            for name, budget in order:
                if name == "A" and clock.now() >= 20:
                    continue
                results = await budget.links["feed"].settle([], 2)
                slots[name] += [at for ok, at in results if ok]
            clock.advance(0.5)
        every = sorted(slots["A"] + slots["B"])
        gaps = [later - earlier for earlier, later in itertools.pairwise(every)]
        assert min(gaps) >= 1.0 - 1e-6  # never above the key's pace, whoever asked
        assert len(slots["A"]) >= 5 and len([t for t in slots["B"] if t < 20]) >= 5
        assert max(slots["A"]) <= 19.5 + 2.0  # its last ask + the horizon: no slot later
        late = [t for t in every if t > 19.5 + 2.0]
        assert late == [t for t in slots["B"] if t > 19.5 + 2.0]  # every later start is B's
        assert len(late) >= 18 and max(b - a for a, b in itertools.pairwise(late)) <= 1
    finally:
        await a.close()
        await b.close()
        await sa.close()
        await sb.close()


async def test_tasks_together_stay_within_one_fixed_window(sink: PostgresSink, db_url: str) -> None:
    """/events' 10 per 60 s, opened by the first request: two tasks asking for 6 each get
    10 between them per window, whoever asks first; the next 10 when the window rolls."""
    clock = FakeClock(autojump=False)
    (a, sa), (b, sb) = task(db_url, clock, "A"), task(db_url, clock, "B")
    a.events(TokenBucket(10 / 60, 10, clock))
    b.events(TokenBucket(10 / 60, 10, clock))
    try:
        first_a = await a.links["events"].settle([], 6)
        first_b = await b.links["events"].settle([], 6)
        assert [ok for ok, _ in first_a] == [True] * 6
        assert [ok for ok, _ in first_b] == [True] * 4 + [False] * 2
        again = first_b[-1][1]
        assert 58 <= again < 60.25  # told to ask again shortly before the window rolls
        clock.advance(again)
        second_b = await b.links["events"].settle([], 6)
        second_a = await a.links["events"].settle([], 6)
        granted = [at for ok, at in second_a + second_b if ok]
        assert len(granted) == 10 and min(granted) >= 60.0
    finally:
        await a.close()
        await b.close()
        await sa.close()
        await sb.close()


async def test_what_one_task_learns_the_other_obeys(sink: PostgresSink, db_url: str) -> None:
    """A's 429 with Retry-After 30 s pauses B too; A's feed throttle (a cap learnt from
    the starts in its window) is B's cap at B's next exchange."""
    clock = FakeClock(autojump=False)
    (a, sa), (b, sb) = task(db_url, clock, "A"), task(db_url, clock, "B")
    bucket_a = a.events(TokenBucket(10 / 60, 10, clock))
    b.events(TokenBucket(10 / 60, 10, clock))
    feed_a, feed_b = a.feed(paced(clock, 10.0)), b.feed(paced(clock, 10.0))
    try:
        bucket_a.pause_for(30)
        await a.links["events"].flush()
        (ok, at), *_ = await b.links["events"].settle([], 1)
        assert not ok and at >= 29.0  # B asks again only when the pause is nearly over

        starts = [at for ok, at in await a.links["feed"].settle([], 10) if ok]
        assert len(starts) <= 10
        clock.advance(max(starts) - clock.now() + 0.1)
        feed_a.on_throttled(starts[-1])
        await a.links["feed"].flush()
        await b.links["feed"].settle([], 0)
        assert isinstance(feed_b, AdaptiveRate)
        assert feed_b.cap == len(starts) - 1 and feed_b.throttled == 1
        assert feed_b.paused_until > clock.now()  # the cooldown holds B too
    finally:
        await a.close()
        await b.close()
        await sa.close()
        await sb.close()


async def test_the_budget_is_named_by_a_fingerprint_never_the_key(
    sink: PostgresSink, db_url: str
) -> None:
    """The shared state and its log identify the key by a fingerprint; the key is nowhere
    in the database, and another key (or the same key on another API) is another budget."""
    clock = FakeClock(autojump=False)
    a, sa = task(db_url, clock, "A")
    a.events(TokenBucket(10 / 60, 10, clock))
    try:
        await a.links["events"].settle([], 3)
    finally:
        await a.close()
        await sa.close()
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT key_fp, state, holder FROM rate_budget")
        log = await conn.fetch("SELECT key_fp, holder, slots FROM rate_budget_log")
    finally:
        await conn.close()
    assert [r["key_fp"] for r in rows] == [key_fingerprint(URL, KEY)]
    assert all(KEY not in str(dict(r)) for r in [*rows, *log])
    assert [r["slots"] for r in log] == [3]
    assert key_fingerprint(URL, KEY + "x") != key_fingerprint(URL, KEY)
    assert key_fingerprint("http://other:9/api/v1", KEY) != key_fingerprint(URL, KEY)


async def test_status_shows_each_shared_budget_with_its_tasks_and_what_it_learnt(
    sink: PostgresSink, db_url: str
) -> None:
    """`etl status` (and its JSON) lists the key's budget per lane, named by the key's
    fingerprint: the tasks that took slots in the last minute and how many, the slots per
    second, and what the limiter has learnt (the feed's cap after A's 429, which B obeys);
    the key itself is nowhere in it."""
    clock = FakeClock(time.time(), autojump=False)  # the stores use the database's clock
    fp = key_fingerprint(URL, KEY)
    sa, sb = PgBudgetStore(db_url, holder="host-a:11"), PgBudgetStore(db_url, holder="host-b:22")
    a, b = KeyBudget(sa, fp), KeyBudget(sb, fp)
    feed_a = a.feed(AdaptiveRate(100.0, clock, max_per_s=200.0, window_s=300.0))
    b.feed(AdaptiveRate(100.0, clock, max_per_s=200.0, window_s=300.0))
    a.events(TokenBucket(10 / 60, 10, clock))
    try:
        starts = [at for ok, at in await a.links["feed"].settle([], 3) if ok]
        assert len(starts) == 3
        assert sum(ok for ok, _ in await b.links["feed"].settle([], 2)) == 2
        assert sum(ok for ok, _ in await a.links["events"].settle([], 4)) == 4
        feed_a.on_throttled(starts[-1])
        await a.links["feed"].flush()
        snapshot = await read_status(db_url)
    finally:
        for closing in (a.close, b.close, sa.close, sb.close):
            await closing()
    lanes = {row.lane: row for row in snapshot.budgets}
    assert set(lanes) == {"feed", "events"}
    assert lanes["feed"].holders == (("host-a:11", 3), ("host-b:22", 2))
    assert lanes["feed"].limits["cap"] == 2 and lanes["feed"].limits["throttled"] == 1
    assert lanes["events"].holders == (("host-a:11", 4),)
    assert lanes["events"].limits["limit"] == 10
    doc = snapshot_to_json(snapshot)
    assert [(d["key"], d["lane"]) for d in doc["budgets"]] == [(fp, "events"), (fp, "feed")]
    assert doc["budgets"][1]["slots_per_s"] == round(5 / 60, 3)
    console = Console(record=True, width=160)
    console.print(render_status(snapshot))
    text = console.export_text()
    assert f"{fp[:12]}…" in text and "cap 2 per 300 s" in text
    assert "host-a:11" in text and "host-b:22" in text
    assert KEY not in text and KEY not in json.dumps(doc)


async def test_a_probe_of_a_killed_task_holds_the_others_no_longer(
    sink: PostgresSink, db_url: str
) -> None:
    """While the feed's throttle is being learnt, one request goes alone at each checkpoint
    and every other start waits for its answer (or, not refused, its wait: a quarter of a
    second before any test passed). A task killed with that probe out never answers: as
    long as A is connected B waits, and as soon as A's connections are gone (what a
    SIGKILL does) B's next ask is granted at once."""
    clock = FakeClock(autojump=False)
    (a, sa), (b, sb) = task(db_url, clock, "A"), task(db_url, clock, "B")
    # the checkpoint after 3 starts; 50 a second, so one more every 0.02 s
    a.feed(AdaptiveRate(50.0, clock, window_s=300.0, prior_per_s=0.01, learn_window=True))
    b.feed(AdaptiveRate(50.0, clock, window_s=300.0, prior_per_s=0.01, learn_window=True))
    try:
        assert sum(ok for ok, _ in await a.links["feed"].settle([], 3)) == 3
        clock.advance(0.06)
        assert [ok for ok, _ in await a.links["feed"].settle([], 1)] == [True]  # the probe
        clock.advance(0.02)
        assert [ok for ok, _ in await b.links["feed"].settle([], 1)] == [False]  # it waits
        conn = await asyncpg.connect(db_url)
        try:  # A's process is killed: its connections close (waited for, up to 5 s)
            await conn.fetch(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE application_name = 'etl budget A'"
            )
        finally:
            await conn.close()
        (ok, at), *_ = await b.links["feed"].settle([], 1)
        assert ok and at == clock.now()  # not the probe's wait later
    finally:
        await b.close()
        await sb.close()
        with contextlib.suppress(Exception):
            await a.close()
        with contextlib.suppress(Exception):
            await sa.close()


async def test_a_task_asking_less_often_still_gets_its_part(
    sink: PostgresSink, db_url: str
) -> None:
    """Slots are granted a short horizon ahead; A, with many requests waiting, asks four
    times as often as B (a task just restarted, its in-flight limit still small). Each may
    hold only its part of a horizon's slots ahead, so B, asking for more than half, gets
    close to half the key's starts instead of what A left over; together never above the
    key's pace; and A alone (B stopped) again takes every start."""
    clock = FakeClock(autojump=False)
    (a, sa), (b, sb) = task(db_url, clock, "A"), task(db_url, clock, "B")
    a.feed(paced(clock, 10.0))
    b.feed(paced(clock, 10.0))
    slots: dict[str, list[float]] = {"A": [], "B": []}
    try:
        for step in range(600):  # 30 s; B asks every 0.2 s for the first 20 s
            asking = [("A", a)] + ([("B", b)] if step % 4 == 0 and step < 400 else [])
            for name, budget in asking:
                results = await budget.links["feed"].settle([], 10)
                slots[name] += [at for ok, at in results if ok]
            clock.advance(0.05)
        every = sorted(slots["A"] + slots["B"])
        assert min(later - earlier for earlier, later in itertools.pairwise(every)) >= 0.1 - 1e-6
        shared = [t for t in every if t < 20]
        b_part = sum(1 for t in slots["B"] if t < 20) / len(shared)
        assert b_part >= 0.4, b_part
        alone = [t for t in every if t >= 21]
        assert alone == [t for t in slots["A"] if t >= 21] and len(alone) >= 85
    finally:
        await a.close()
        await b.close()
        await sa.close()
        await sb.close()


async def test_a_slow_exchange_does_not_end_the_events_window_early(
    sink: PostgresSink, db_url: str
) -> None:
    """The database's clock is 1000 s ahead of the task's. A request sent 0.5 s after its
    token opens the server's 6 s window (X-RateLimit-Reset 6); meanwhile an exchange came
    back 0.3 s after the database read its clock (a busy event loop). The
    next window's tokens are still granted no earlier than 6 s after that send on the
    database's clock: a task that took the slow exchange's offset would have counted the
    send 0.3 s early and had them granted while the server's window was still open (429s)."""
    clock = FakeClock(autojump=False)
    way_back = [0.0]

    def db_now() -> float:
        read = clock.now() + 1000.0
        clock.advance(way_back[0])  # from the database's clock read to this task's
        return read

    store = PgBudgetStore(db_url, holder="A", now=db_now)
    budget = KeyBudget(store, key_fingerprint(URL, KEY))
    bucket = budget.events(TokenBucket(10 / 6, 10, clock))  # 10 per 6 s
    link = budget.links["events"]
    try:
        first = await link.settle([], 10)
        assert all(ok for ok, _ in first)
        clock.advance(0.5)
        sent = clock.now()  # the first request goes: the server's window opens
        clock.advance(2.0)
        way_back[0] = 0.3
        await link.settle([], 1)  # refused (the window's 10 are out), slowly
        way_back[0] = 0.0
        bucket.sync(10, 0, 6.0, sent_at=sent)  # the first request's answer
        await link.flush()
        granted: list[float] = []
        while not granted:
            granted = [at for ok, at in await link.settle([], 1) if ok]
            clock.advance(0.01)
        assert granted[0] >= 1000.0 + sent + 6.0
    finally:
        await budget.close()
        await store.close()


async def test_an_ask_that_waits_for_the_budget_is_logged_as_booked(
    sink: PostgresSink, db_url: str
) -> None:
    """A feed paced at 1 start/s: an ask served at once is logged with its slot alone; one
    made 0.1 s later gets the start due at 1 s (it waits for the budget) and is logged as
    a row of 0 slots too: the key's budget was booked then, nothing of it left unused (the
    benchmark's measure of a dead task's part being reused)."""
    clock = FakeClock(autojump=False)
    a, store = task(db_url, clock, "A")
    a.feed(paced(clock))
    link = a.links["feed"]
    try:
        [(ok, at)] = await link.settle([], 1)
        assert ok and at == 0.0
        clock.advance(0.1)
        [(ok, at)] = await link.settle([], 1)
        assert ok and at == 1.0
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT at, slots FROM rate_budget_log ORDER BY at, slots")
        finally:
            await conn.close()
        assert [(r["at"], r["slots"]) for r in rows] == [(0.0, 1), (0.1, 0), (0.1, 1)]
    finally:
        await a.close()
        await store.close()
