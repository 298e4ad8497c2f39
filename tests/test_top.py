"""`etl top`: largest users, types and pages by events or purchases, ties in a fixed order."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from etl.cli import app
from etl.errors import ExitCode
from etl.read.top import read_top
from tests.fixtures_db import run_sync
from tests.read_data import T0, USERS, event, load

A, B, C = USERS[0], USERS[1], USERS[2]


def dataset() -> list:  # type: ignore[type-arg]
    """A: 3 events, 1 purchase; B: 3 events, 2 purchases; C: 2 events, 2 purchases."""
    spec = [
        (A, "click"),
        (A, "click"),
        (A, "purchase"),
        (B, "purchase"),
        (B, "purchase"),
        (B, "page_view"),
        (C, "purchase"),
        (C, "purchase"),
    ]
    return [
        event(i, at=T0, user=u, type=t, page="/a" if i % 2 else "/b")
        for i, (u, t) in enumerate(spec)
    ]


async def test_users_by_events_then_purchases_then_id(db_url: str) -> None:
    """By events A and B tie at 3: B first (more purchases); by purchases B and C tie at 2:
    B first (more events)."""
    await load(db_url, [dataset()])
    by_events = await read_top(db_url, "users", by="events")
    assert [(r.key, r.events, r.purchases) for r in by_events.rows] == [
        (B, 3, 2),
        (A, 3, 1),
        (C, 2, 2),
    ]
    by_purchases = await read_top(db_url, "users", by="purchases", limit=2)
    assert [r.key for r in by_purchases.rows] == [B, C]


async def test_full_tie_orders_by_key(db_url: str) -> None:
    """Users with equal events and purchases come in id order, on every run; pages and types
    follow the same rule."""
    await load(db_url, [[event(i, at=T0, user=u, type="click") for i, u in enumerate((C, A, B))]])
    for _ in range(3):
        users = await read_top(db_url, "users")
        assert [r.key for r in users.rows] == [A, B, C]


async def test_pages_and_types(db_url: str) -> None:
    """Pages /a and /b tie on events (4): /b has more purchases; types by events."""
    await load(db_url, [dataset()])
    pages = await read_top(db_url, "pages")
    assert [(r.key, r.events, r.purchases) for r in pages.rows] == [("/b", 4, 3), ("/a", 4, 2)]
    types = await read_top(db_url, "types")
    assert [(r.key, r.events) for r in types.rows] == [
        ("purchase", 5),
        ("click", 2),
        ("page_view", 1),
    ]


async def test_users_in_a_range_of_hours(db_url: str) -> None:
    """A range counts the users' events in its whole hours; a range holding every hour loaded
    (open or not) answers as no range; an empty range lists nobody."""
    hour = dt.timedelta(hours=1)
    spec = [(A, 0), (A, 0), (B, 1), (B, 1), (B, 1), (C, 2), (A, 2), (A, 2)]
    await load(db_url, [[event(i, at=T0 + h * hour, user=u) for i, (u, h) in enumerate(spec)]])

    async def top(**kw: dt.datetime) -> list[tuple[str, int]]:
        return [(r.key, r.events) for r in (await read_top(db_url, "users", **kw)).rows]

    everything = [(A, 4), (B, 3), (C, 1)]
    assert await top() == everything
    assert await top(since=T0 - 5 * hour) == everything
    assert await top(since=T0, until=T0 + 3 * hour) == everything
    assert await top(until=T0 + 2 * hour + dt.timedelta(minutes=1)) == everything
    assert await top(since=T0 + hour) == [(B, 3), (A, 2), (C, 1)]
    assert await top(until=T0 + hour) == [(A, 2)]
    assert await top(since=T0 + dt.timedelta(minutes=30), until=T0 + 2 * hour) == [(B, 3), (A, 2)]
    assert await top(since=T0 + 5 * hour) == []


def test_cli(db_url: str) -> None:
    """--json is a document; an unknown list or measure is exit 2."""
    run_sync(load(db_url, [dataset()]))
    env = {"DATABASE_URL": db_url}
    out = CliRunner().invoke(app, ["top", "types", "--by", "purchases", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"][0] == {
        "rank": 1,
        "key": "purchase",
        "events": 5,
        "purchases": 5,
    }
    assert CliRunner().invoke(app, ["top", "cities"], env=env).exit_code == ExitCode.CONFIG
    bad = CliRunner().invoke(app, ["top", "users", "--by", "money"], env=env)
    assert bad.exit_code == ExitCode.CONFIG
