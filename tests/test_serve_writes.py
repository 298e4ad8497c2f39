"""What writes through `etl serve` do to the rest: the status counts posted events, a blocking
purge keeps them out, GET /anomalies stores nothing, and cached answers follow the data."""

from __future__ import annotations

import asyncio

import asyncpg

from etl.read.status import read_status
from tests.serve_harness import ClientFactory, at, event, seed


async def test_posted_events_count_in_status_health_and_dashboard(
    serve_client: ClientFactory, db_url: str
) -> None:
    """Events recorded by POST /events are in /status' loaded count (and its 'posted'), in
    `etl status`' snapshot and on the dashboard; a replayed batch adds nothing."""
    client = await serve_client()
    batch = [event(), event(), event()]
    assert (await client.post("/events", json=batch)).status == 201
    assert (await client.post("/events", json=batch)).status == 200
    doc = await (await client.get("/status")).json()
    assert doc["events"]["loaded"] == 3 and doc["events"]["posted"] == 3
    snapshot = await read_status(db_url)
    assert snapshot.loaded == 3 and snapshot.ingested == 0
    page = await (await client.get("/")).text()
    assert '<b id="loaded">3</b>' in page and "3 posted" in page
    assert (await client.get("/health")).status == 200


async def test_a_purged_event_posted_again_is_not_recorded(
    serve_client: ClientFactory, db_url: str
) -> None:
    """After a purge that blocks reloading, posting the event again answers 409 'purged' and
    records nothing; in a batch with new events it is reported 'purged' and the rest go in;
    after a purge with allow_reload it can be posted again."""
    client = await serve_client()
    gone = event(type_="signup", ts=at(1))
    assert (await client.post("/events", json=gone)).status == 201
    assert (await (await client.delete("/series/signup")).json())["deleted"] == 1
    r = await client.post("/events", json=gone)
    doc = await r.json()
    assert r.status == 409 and doc["error"]["code"] == "purged"
    assert doc["error"]["details"]["events"] == [{"index": 0, "id": gone["id"]}]
    fresh = event(type_="page_view", ts=at(1))
    r = await client.post("/events", json=[gone, fresh])
    doc = await r.json()
    assert r.status == 201 and doc["created"] == 1 and doc["purged"] == 1
    assert {x["id"]: x["status"] for x in doc["results"]} == {
        gone["id"]: "purged",
        fresh["id"]: "created",
    }
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'signup'") == 0
        await conn.execute("UPDATE purges SET block_reload = false")  # as allow_reload would
    finally:
        await conn.close()
    assert (await client.post("/events", json=gone)).status == 201


async def test_get_anomalies_stores_nothing_post_runs_stores_a_run(
    serve_client: ClientFactory, db_url: str
) -> None:
    """GET /anomalies judges without storing (run_id null, no row); POST /anomalies/runs
    stores the run and answers 201 with its id."""
    client = await serve_client()
    await seed(client)
    q = {"training_days": "1", "detection_days": "1"}
    got = await (await client.get("/anomalies", params=q)).json()
    assert got["run_id"] is None and got["series_checked"] == 3
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM anomaly_runs") == 0
        r = await client.post("/anomalies/runs", params=q)
        stored = await r.json()
        assert r.status == 201 and isinstance(stored["run_id"], int)
        assert await conn.fetchval("SELECT count(*) FROM anomaly_runs") == 1
        assert stored["anomalies"] == got["anomalies"]
    finally:
        await conn.close()


async def test_data_answers_are_kept_until_the_data_changes(
    serve_client: ClientFactory,
) -> None:
    """A data route is answered from memory while the data's version stays the same (however
    long, up to the max age); a write through this server is seen by the next request, a
    write by another process once the version is read again (poll interval); /metrics
    counts hits and misses per route."""
    now = [1000.0]
    client = await serve_client(
        cache_ttl_s=1.0, cache_poll_s=5.0, cache_max_age_s=600.0, clock=lambda: now[0]
    )
    other = await serve_client()  # another process writing to the same database
    assert (await client.post("/events", json=event(ts=at(1)))).status == 201

    async def total() -> int:
        doc = await (await client.get("/series", params={"bucket": "day"})).json()
        return sum(sum(s["values"]) for s in doc["series"])

    assert await total() == 1
    now[0] += 100.0  # far past the 1 s TTL of live routes: still the same data
    assert await total() == 1
    assert (await client.post("/events", json=event(ts=at(2)))).status == 201
    assert await total() == 2  # this server's own write: seen at once
    assert (await other.post("/events", json=event(ts=at(3)))).status == 201
    assert await total() == 2  # another's write: not until the version is read again
    now[0] += 10.0  # two intervals: the version is read before answering
    assert await total() == 3
    text = await (await client.get("/metrics")).text()
    assert 'etl_http_cache_answers_total{route="/series",result="hit"} 2' in text
    assert 'etl_http_cache_answers_total{route="/series",result="miss"} 3' in text


async def test_kept_data_answers_outlive_a_lost_database_up_to_their_max_age(
    serve_client: ClientFactory, pg_server_url: str
) -> None:
    """With the database gone, a data answer already kept is still given (its version cannot
    be read, so nothing says it changed) until its max age; a live route answers 503."""
    from tests.fixtures_db import with_database
    from tests.serve_harness import migrated

    name = "etl_serve_kept_db"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(pg_server_url, name)
    await migrated(dsn)
    now = [1000.0]
    client = await serve_client(
        dsn=dsn, cache_ttl_s=1.0, cache_max_age_s=60.0, clock=lambda: now[0]
    )
    try:
        ev = event(ts=at(1))
        assert (await client.post("/events", json=ev)).status == 201
        path = f"/events/{ev['userId']}"
        assert (await client.get(path)).status == 200
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        now[0] += 10.0
        r = await client.get(path)
        assert r.status == 200 and [e["id"] for e in (await r.json())["events"]] == [ev["id"]]
        assert (await client.get("/status")).status == 503
        now[0] += 60.0
        assert (await client.get(path)).status == 503
    finally:
        await client.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_posts_are_recorded_exactly_once(
    serve_client: ClientFactory, db_url: str
) -> None:
    """Forty requests at once, neighbours sharing some event ids (inserted together in
    groups): every request is answered, each id is reported created by exactly one of them
    and present by the others, and the table and /status hold each event once."""
    client = await serve_client()
    evs = [event(ts=at(k % 5)) for k in range(400)]
    batches = [evs[k * 10 : k * 10 + 15] for k in range(40)]  # 5 ids shared with the next
    answers = await asyncio.gather(*(client.post("/events", json=b) for b in batches))
    docs = [await r.json() for r in answers]
    assert all(r.status == 201 for r in answers)
    created = [x["id"] for d in docs for x in d["results"] if x["status"] == "created"]
    assert sorted(created) == sorted(e["id"] for e in evs)
    assert sum(d["created"] for d in docs) == 400
    assert sum(d["present"] for d in docs) == sum(map(len, batches)) - 400
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 400
        assert await conn.fetchval("SELECT sum(events) FROM rollup_hourly") == 400
    finally:
        await conn.close()
    assert (await (await client.get("/status")).json())["events"]["posted"] == 400


async def test_a_request_the_database_refuses_fails_alone(
    serve_client: ClientFactory, db_url: str
) -> None:
    """Among requests inserted together, one whose rows the database refuses (here a check
    constraint stands in for it) is answered 503; the others are recorded."""
    client = await serve_client()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("ALTER TABLE events ADD CONSTRAINT refuse CHECK (type <> 'refused')")
        good = [[event(), event()] for _ in range(12)]
        bad = [event(type_="refused")]
        answers = await asyncio.gather(*(client.post("/events", json=b) for b in [*good, bad]))
        assert [r.status for r in answers] == [201] * 12 + [503]
        assert (await answers[-1].json())["error"]["code"] == "database_unavailable"
        assert await conn.fetchval("SELECT count(*) FROM events") == 24
    finally:
        await conn.close()
