"""`etl serve`'s HTTP API against a real PostgreSQL over loopback."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fixtures_db import with_database
from tests.serve_harness import ClientFactory, event


def _is_envelope(doc: dict[str, object], code: str) -> bool:
    err = doc.get("error")
    return (
        isinstance(err, dict)
        and err.get("code") == code
        and set(err)
        == {
            "code",
            "message",
            "details",
        }
    )


async def test_health_ok_names_database_api_and_dataset(serve_client: ClientFactory) -> None:
    """/health answers 200 with database ok, api 'not configured' and the dataset served."""
    client = await serve_client(dataset={"source": "datasync", "streams": ["events"]})
    r = await client.get("/health")
    doc = await r.json()
    assert r.status == 200
    assert doc["status"] == "ok" and doc["database"] == "ok"
    assert doc["api"] == "not configured"
    assert doc["dataset"] == {"source": "datasync", "streams": ["events"]}


async def test_database_down_is_503_without_password_then_recovers(
    serve_client: ClientFactory, pg_server_url: str
) -> None:
    """With the database missing every DB route answers 503 (no password in the text); once
    it exists the same server answers 200 without a restart."""
    name = "etl_serve_late_db"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    dsn = with_database(pg_server_url, name)
    client = await serve_client(dsn=dsn, migrate_db=False)
    try:
        r = await client.get("/status")
        body = await r.text()
        assert r.status == 503 and _is_envelope(await r.json(), "database_unavailable")
        h = await client.get("/health")
        assert h.status == 503 and (await h.json())["database"] == "error"
        assert "database" in body
        await admin.execute(f'CREATE DATABASE "{name}"')
        r = await client.get("/status")
        assert r.status == 200
        assert (await client.get("/health")).status == 200
    finally:
        await client.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_password_in_dsn_never_reaches_the_client(serve_client: ClientFactory) -> None:
    """A DSN with a password to a closed port: 503, and the password is nowhere in the answer."""
    dsn = "postgresql://etl:s3cr3t-pw-zz@127.0.0.1:9/etl"
    client = await serve_client(dsn=dsn, migrate_db=False)
    for path in ("/status", "/health", "/metrics", "/"):
        r = await client.get(path)
        assert "s3cr3t-pw-zz" not in await r.text(), path
    assert (await client.get("/status")).status == 503


async def test_post_event_created_then_present_exactly_once(
    serve_client: ClientFactory, db_url: str
) -> None:
    """One event: 201 created; the same again: 200 present; one row in events either way."""
    client = await serve_client()
    ev = event()
    first = await client.post("/events", json=ev)
    assert first.status == 201
    assert (await first.json())["results"] == [{"id": ev["id"], "status": "created"}]
    again = await client.post("/events", json=ev)
    assert again.status == 200
    assert (await again.json())["results"] == [{"id": ev["id"], "status": "present"}]
    conn = await asyncpg.connect(db_url)
    try:
        n = await conn.fetchval("SELECT count(*) FROM events WHERE id = $1::uuid", ev["id"])
        ts = await conn.fetchval("SELECT occurred_at FROM events WHERE id = $1::uuid", ev["id"])
    finally:
        await conn.close()
    assert n == 1
    assert ts.isoformat() == "2026-11-30T10:15:00+00:00"


async def test_post_batch_mixes_created_and_present(serve_client: ClientFactory) -> None:
    """A batch (array or {events: [...]}) reports each id; new ones make it 201."""
    client = await serve_client()
    old, new = event(), event(ts="1764497700123")  # epoch ms, normalized like an ingest
    assert (await client.post("/events", json=[old])).status == 201
    r = await client.post("/events", json={"events": [old, new]})
    doc = await r.json()
    assert r.status == 201
    assert doc["created"] == 1 and doc["present"] == 1
    assert {x["id"]: x["status"] for x in doc["results"]} == {
        old["id"]: "present",
        new["id"]: "created",
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"timestamp": "yesterday-ish"}, "timestamp"),
        ({"type": ""}, "type"),
        ({"userId": 42}, "userId"),
        ({"properties": [1, 2]}, "properties"),
    ],
)
async def test_invalid_event_is_400_with_field_and_nothing_recorded(
    serve_client: ClientFactory, db_url: str, mutate: dict[str, object], field: str
) -> None:
    """An invalid event in a batch: 400 naming its index and field; no event of the request
    is inserted; the invalid one is quarantined with its reason, as an ingest would."""
    client = await serve_client()
    good, bad = event(), {**event(), **mutate}
    r = await client.post("/events", json=[good, bad])
    doc = await r.json()
    assert r.status == 400 and _is_envelope(doc, "invalid_event")
    assert doc["error"]["details"]["field"] == field
    assert doc["error"]["details"]["events"][0]["index"] == 1
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
        assert await conn.fetchval("SELECT count(*) FROM quarantine WHERE shard_id = 'http'") == 1
    finally:
        await conn.close()


async def test_bad_bodies_get_clear_4xx(serve_client: ClientFactory) -> None:
    """Not JSON -> 400, wrong content type -> 415, over the byte cap or event cap -> 413,
    an unknown route -> 404: each in the one error envelope."""
    client = await serve_client(max_body_bytes=4096, max_events_per_request=3)
    r = await client.post("/events", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400 and _is_envelope(await r.json(), "bad_request")
    r = await client.post("/events", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status == 415 and _is_envelope(await r.json(), "unsupported_media_type")
    r = await client.post("/events", json=[event() for _ in range(4)])
    assert r.status == 413 and _is_envelope(await r.json(), "payload_too_large")
    r = await client.post(
        "/events", data=b"[" + b" " * 8000 + b"]", headers={"Content-Type": "application/json"}
    )
    assert r.status == 413 and _is_envelope(await r.json(), "payload_too_large")
    r = await client.get("/nowhere")
    assert r.status == 404 and _is_envelope(await r.json(), "not_found")
    # the server still answers normally afterwards
    assert (await client.post("/events", json=event())).status == 201


async def test_client_key_required_except_on_public_routes(serve_client: ClientFactory) -> None:
    """With a client key set, API routes need it (header or Bearer); /health does not."""
    client = await serve_client(client_api_key="k-123")
    r = await client.get("/status")
    assert r.status == 401 and _is_envelope(await r.json(), "unauthorized")
    assert (await client.get("/status", headers={"X-API-Key": "wrong"})).status == 401
    assert (await client.get("/status", headers={"X-API-Key": "k-123"})).status == 200
    assert (await client.get("/status", headers={"Authorization": "Bearer k-123"})).status == 200
    assert (await client.get("/health")).status == 200


async def test_status_is_what_etl_status_json_prints(serve_client: ClientFactory) -> None:
    """/status is the versioned status document (schema 1) of this database."""
    client = await serve_client()
    doc = await (await client.get("/status")).json()
    assert doc["schema"] == 1 and doc["initialized"] is True
    assert doc["events"]["loaded"] == 0


async def test_metrics_count_requests_per_route(serve_client: ClientFactory) -> None:
    """/metrics exposes per-route request counts and latency histograms, labelled by the
    route pattern, plus the sync's gauges."""
    client = await serve_client()
    await client.post("/events", json=event())
    await client.get("/status")
    await client.get("/status")
    text = await (await client.get("/metrics")).text()
    assert 'etl_http_requests_total{method="GET",route="/status",status="200"} 2' in text
    assert 'etl_http_requests_total{method="POST",route="/events",status="201"} 1' in text
    assert 'etl_http_request_duration_seconds_count{method="GET",route="/status"} 2' in text
    assert "etl_database_up 1" in text


async def test_get_answers_are_shared_for_the_cache_ttl_and_failures_never_cached(
    serve_client: ClientFactory, pg_server_url: str
) -> None:
    """Within the cache TTL a GET is answered from the last 200 (the database is not asked);
    after it the database is asked again; a 503 is never cached."""
    name = "etl_serve_cache_db"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    now = [1000.0]
    client = await serve_client(
        dsn=with_database(pg_server_url, name), cache_ttl_s=1.0, clock=lambda: now[0]
    )
    try:
        assert (await client.get("/status")).status == 200
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        assert (await client.get("/status")).status == 200  # shared answer, 0.0 s old
        now[0] += 1.5
        assert (await client.get("/status")).status == 503  # expired: asked, and it is gone
        assert (await client.get("/status")).status == 503  # the failure was not cached
    finally:
        await client.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_health_is_degraded_after_a_failed_run(
    serve_client: ClientFactory, db_url: str
) -> None:
    """/health judges the sync as `etl health` does: after a failed run it answers 503
    'degraded' naming the run and its error."""
    from tests.test_cli_ops import populate

    await populate(db_url, finish="failed")
    client = await serve_client()
    r = await client.get("/health")
    doc = await r.json()
    assert r.status == 503 and doc["status"] == "degraded" and doc["database"] == "ok"
    assert any("failed" in p and "upstream down" in p for p in doc["problems"])
