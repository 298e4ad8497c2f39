"""Users' newest events from memory (`etl serve`'s user pages): the same bytes as the
database path, and a write is seen at once."""

from __future__ import annotations

import uuid
from typing import Any

from etl.serve.app import CTX
from etl.serve.userpages import PER_USER, UserPages
from tests.serve_harness import ALICE, BOB, ClientFactory, at, event, seed

CAROL = str(uuid.UUID(int=0xCA201))  # 3 events
DAVE = str(uuid.UUID(int=0xDA7E))  # exactly PER_USER events, several in one millisecond
ERIN = str(uuid.UUID(int=0xE210))  # PER_USER + 1
NOBODY = str(uuid.UUID(int=0x40B0D1))


async def _more(client: Any) -> None:
    evs = [event(user=CAROL, ts=at(k * 7.5)) for k in range(3)]
    evs += [event(user=DAVE, ts=at(10 + (k // 4) * 0.01)) for k in range(PER_USER)]
    evs += [event(user=ERIN, ts=at(70 - k * 0.5)) for k in range(PER_USER + 1)]
    for i in range(0, len(evs), 100):
        assert (await client.post("/events", json=evs[i : i + 100])).status == 201


async def test_pages_from_memory_are_the_bytes_the_database_path_sends(
    serve_client: ClientFactory,
) -> None:
    """For users with many, exactly PER_USER, a few and no events, and every limit a page
    from memory can give, the body is byte for byte the database path's (next_before
    included); with a row cap, the users left out are answered by the database."""
    plain = await serve_client()  # no cache: the database path
    await seed(plain)
    await _more(plain)
    cached = await serve_client(cache_ttl_s=1.0)
    ctx = cached.app[CTX]
    assert ctx.cache is not None
    version = await ctx.cache.version()
    await ctx.pages.fill(ctx.db, version)
    for user in (ALICE, BOB, CAROL, DAVE, ERIN, NOBODY):
        for limit in (1, 2, 3, 30, PER_USER - 2, PER_USER - 1):
            r = await plain.get(f"/events/{user}", params={"limit": str(limit)})
            assert r.status == 200
            held = ctx.pages.page(ctx.db, version, user, limit)
            assert held == await r.read(), (user, limit)
            served = await cached.get(f"/events/{user}", params={"limit": str(limit)})
            assert await served.read() == held
    small = UserPages(max_rows=PER_USER + 3)  # room for the newest-cut users only
    await small.fill(ctx.db, version)
    answered = {u: small.page(ctx.db, version, u, 5) for u in (ALICE, BOB, CAROL, DAVE, ERIN)}
    assert answered[ERIN] is not None and answered[CAROL] is None and answered[DAVE] is None
    assert small.page(ctx.db, version, NOBODY, 5) is None  # not every user held: ask


async def test_a_posted_event_is_on_the_users_page_at_once(serve_client: ClientFactory) -> None:
    """With the pages held, an event posted for a user is first on that user's page by the
    next request (the pages belong to the data before the write)."""
    client = await serve_client(cache_ttl_s=1.0)
    await seed(client)
    ctx = client.app[CTX]
    assert ctx.cache is not None
    await ctx.pages.fill(ctx.db, await ctx.cache.version())
    before = await (await client.get(f"/events/{ALICE}")).json()
    assert len(before["events"]) == 50 and before["next_before"]
    newest = event(user=ALICE, ts=at(100))
    assert (await client.post("/events", json=newest)).status == 201
    after = await (await client.get(f"/events/{ALICE}")).json()
    assert [e["id"] for e in after["events"][:2]] == [newest["id"], before["events"][0]["id"]]
