"""`etl serve` cuts series from the whole set held in memory: the same answer as the database."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from etl.read.series import read_series
from etl.serve.seriesstore import slice_set
from tests.serve_harness import T0, ClientFactory, seed


async def test_a_cut_of_the_whole_set_is_what_the_database_answers(
    serve_client: ClientFactory, db_url: str
) -> None:
    """For hours and days, every combination of bounds (absent, inside, before or after the
    data, off the bucket grid, empty) and of types (all, some, unknown, repeated) gives
    exactly the SeriesSet that read_series gives for that question."""
    client = await serve_client()
    await seed(client)  # three days from T0
    h = dt.timedelta(hours=1)
    bounds = [None, T0 - 30 * h, T0, T0 + 5.5 * h, T0 + 49 * h, T0 + 72 * h, T0 + 100 * h]
    kinds = [(), ("click",), ("purchase", "page_view"), ("nope",), ("click", "click")]
    for bucket in ("hour", "day"):
        full = await read_series(db_url, bucket=bucket)
        for since, until in itertools.product(bounds, bounds):
            if since is not None and until is not None and since > until:
                continue
            for types in kinds:
                want = await read_series(
                    db_url, bucket=bucket, types=types, since=since, until=until
                )
                got = slice_set(full, types, since, until)
                assert got == want, (bucket, since, until, types)


async def test_series_routes_answer_from_memory_after_a_write(
    serve_client: ClientFactory,
) -> None:
    """With the cache on, a series route answers from the held set, and a write through the
    server (a new version) is in the next answer."""
    client = await serve_client(cache_ttl_s=1.0)
    await seed(client)

    async def day_totals() -> dict[str, list[int]]:
        doc = await (await client.get("/series", params={"bucket": "day"})).json()
        return {s["name"]: s["values"] for s in doc["series"]}

    assert (await day_totals())["purchase"] == [1, 1, 1]
    assert (await (await client.get("/series/count")).json()) == {"series": 3}
    r = await client.delete("/series/purchase")
    assert (await r.json())["deleted"] == 3
    assert "purchase" not in await day_totals()
    assert (await (await client.get("/series/count")).json()) == {"series": 2}


async def test_the_json_sent_is_what_jsonable_makes(
    serve_client: ClientFactory, db_url: str
) -> None:
    """The C encoder of the read routes gives the same JSON values as ``jsonable`` (times in
    UTC with Z, tuples as lists, non-finite floats as null) for what those routes send."""
    from etl.read.events import user_events
    from etl.read.jsonable import jsonable
    from etl.read.stats import series_report
    from etl.read.top import read_top
    from etl.serve.routes_read import _json
    from tests.serve_harness import ALICE

    client = await serve_client()
    await seed(client)
    values: list[object] = [
        await series_report(db_url, with_stats=True, horizon=3),
        await series_report(db_url, bucket="day", with_stats=True),
        await user_events(db_url, ALICE, limit=5),
        await read_top(db_url, "users"),
        {"stats": (float("nan"), float("inf"), 1.5), "at": T0},
    ]
    for value in values:
        body = _json(value).body
        assert isinstance(body, bytes)
        assert json.loads(body) == jsonable(value)


async def test_top_users_from_memory_are_what_the_database_answers(
    serve_client: ClientFactory, db_url: str
) -> None:
    """Top users cut from the held hourly rows equal read_top's for every range and measure,
    ties included (ordered by the other measure, then the id)."""
    from etl.read.top import read_top
    from etl.read.user_hours import read_user_hours
    from etl.serve.topstore import index_rows, top_users
    from tests.serve_harness import event

    client = await serve_client()
    await seed(client)
    tied = [event(ts=f"2026-11-02T0{h}:10:00Z") for h in range(4)]  # 4 users, 1 event each
    assert (await client.post("/events", json=tied)).status == 201
    rows = await read_user_hours(db_url, cap=10_000)
    assert rows is not None
    held = index_rows(rows)
    assert held is not None
    h = dt.timedelta(hours=1)
    bounds = [None, T0 - 5 * h, T0 + 2.5 * h, T0 + 25 * h, T0 + 27 * h, T0 + 48 * h]
    bounds += [T0 + 80 * h]
    for since, until in itertools.product(bounds, bounds):
        if since is not None and until is not None and since > until:
            continue
        for by in ("events", "purchases"):
            for limit in (1, 3, 10):
                want = await read_top(db_url, "users", by=by, limit=limit, since=since, until=until)
                assert top_users(held, by, limit, since, until) == want, (since, until, by)
