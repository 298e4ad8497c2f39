"""`etl serve`'s read routes over events posted to it (real PostgreSQL, rollups included)."""

from __future__ import annotations

from etl.read.rollups import verify
from tests.serve_harness import ALICE, BOB, ClientFactory, at, event, seed


async def test_user_events_newest_first_with_keyset_paging(serve_client: ClientFactory) -> None:
    """A user's events come newest first with details; next_before pages on without gaps."""
    client = await serve_client()
    evs = await seed(client)
    alice = [e["id"] for e in reversed(evs) if e["userId"] == ALICE]
    seen: list[str] = []
    before = None
    while True:
        q = {"limit": "30"} | ({"before": before} if before else {})
        doc = await (await client.get(f"/events/{ALICE}", params=q)).json()
        seen += [e["id"] for e in doc["events"]]
        assert doc["events"][0]["properties"] == {"path": "/"}
        before = doc["next_before"]
        if before is None:
            break
    assert seen == alice


async def test_bad_parameters_name_what_is_wrong(serve_client: ClientFactory) -> None:
    """A malformed user id, time, limit or bucket is a 400 envelope naming the parameter."""
    client = await serve_client()
    for path, params, word in [
        ("/events/not-a-uuid", {}, "user_id"),
        (f"/events/{ALICE}", {"since": "yesterday"}, "since"),
        (f"/events/{ALICE}", {"limit": "0"}, "limit"),
        ("/series", {"bucket": "week"}, "bucket"),
        ("/series", {"since": "2026-11-03", "until": "2026-11-01"}, "since"),
        ("/top/planets", {}, "top"),
    ]:
        r = await client.get(path, params=params)
        doc = await r.json()
        assert r.status == 400, path
        assert doc["error"]["code"] == "bad_request" and word in doc["error"]["message"]


async def test_series_counts_stats_and_count(serve_client: ClientFactory, db_url: str) -> None:
    """Series come from the rollups POST /events keeps in its transaction: exact per bucket,
    daily sums right, stats and the number of series held; the rollups verify clean."""
    client = await serve_client()
    await seed(client)
    doc = await (await client.get("/series", params={"bucket": "day"})).json()
    by_name = {s["name"]: s["values"] for s in doc["series"]}
    assert by_name == {"click": [24, 24, 24], "page_view": [24, 24, 24], "purchase": [1, 1, 1]}
    one = await (
        await client.get("/series/click", params={"since": at(10), "until": at(13)})
    ).json()
    assert [s["values"] for s in one["series"]] == [[1, 1, 1]]
    assert (await (await client.get("/series/count")).json()) == {"series": 3}
    stats = await (await client.get("/series/purchase/stats", params={"bucket": "day"})).json()
    assert stats["stats"][0]["count"] == 3 and stats["stats"][0]["max"] == 1
    assert not (await verify(db_url)).differences


async def test_forecast_needs_history_then_gives_an_interval(serve_client: ClientFactory) -> None:
    """With three days of hourly data a 6-hour forecast comes with low <= value <= high;
    with one hour of data the answer is 422, not a crash."""
    client = await serve_client()
    r = await client.post("/events", json=event(ts=at(1)))
    assert r.status == 201
    r = await client.get("/series/page_view/forecast", params={"h": "6"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "cannot_forecast"
    await seed(client)
    doc = await (await client.get("/series/click/forecast", params={"h": "6"})).json()
    points = doc["forecasts"][0]["points"]
    assert len(points) == 6
    assert all(p["low"] <= p["value"] <= p["high"] for p in points)
    assert abs(points[0]["value"] - 1.0) < 0.5  # one click an hour, every hour


async def test_purge_a_type_dry_run_then_delete(serve_client: ClientFactory, db_url: str) -> None:
    """DELETE /series/{type}?dry_run=true counts and keeps; without it the events go and the
    series drops to zero in the same transaction (rollups still verify)."""
    client = await serve_client()
    await seed(client)
    dry = await (await client.delete("/series/purchase", params={"dry_run": "true"})).json()
    assert dry["matched"] == 3 and dry["deleted"] == 0
    done = await (await client.delete("/series/purchase")).json()
    assert done["deleted"] == 3
    doc = await (await client.get("/series", params={"bucket": "day"})).json()
    assert "purchase" not in {s["name"] for s in doc["series"]}
    assert not (await verify(db_url)).differences


async def test_top_users_deterministic(serve_client: ClientFactory) -> None:
    """Top users by events: Bob (click + purchases) before Alice; by purchases, Bob first."""
    client = await serve_client()
    await seed(client)
    doc = await (await client.get("/top/users")).json()
    assert [(r["key"], r["events"]) for r in doc["rows"]] == [(BOB, 75), (ALICE, 72)]


async def test_anomalies_and_a_failing_thresholds_service(serve_client: ClientFactory) -> None:
    """/anomalies answers the report; with a thresholds service that is down it is 502 with
    the error envelope, never an empty list."""
    client = await serve_client()
    await seed(client)
    r = await client.get("/anomalies", params={"training_days": "1", "detection_days": "1"})
    doc = await r.json()
    assert r.status == 200 and doc["series_checked"] == 3
    assert doc["found"] is bool(doc["anomalies"] or doc["breaches"])
    assert all({"value", "expected", "zscore", "direction"} <= set(a) for a in doc["anomalies"])
    broken = await serve_client(thresholds_url="http://127.0.0.1:9/benchmarks/thresholds")
    r = await broken.get("/anomalies")
    doc = await r.json()
    assert r.status == 502 and doc["error"]["code"] == "upstream_error"
