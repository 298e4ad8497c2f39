"""The sandbox's Databox Ingestion API: datasets, data, ingestions, limits and faults."""

from __future__ import annotations

from typing import Any

import aiohttp

from etl.sandbox.databox.config import DATABOX_DEMO_KEY, DataboxConfig
from tests.fixtures_sandbox import Reply, SandboxFactory, SandboxHandle, fetch

KEY = {"x-api-key": DATABOX_DEMO_KEY}


def dbx(sb: SandboxHandle, path: str) -> str:
    return f"{sb.root_url}/databox{path}"


async def make_dataset(
    http: aiohttp.ClientSession, sb: SandboxHandle, primary_keys: list[str] | None = None
) -> str:
    src = await fetch(http, "POST", dbx(sb, "/v1/data-sources"), json={"title": "etl"})
    body: dict[str, Any] = {"title": "events", "dataSourceId": src.json()["id"]}
    if primary_keys is not None:
        body["primaryKeys"] = primary_keys
    created = await fetch(http, "POST", dbx(sb, "/v1/datasets"), json=body)
    assert created.status == 200, created.text
    dataset_id: str = created.json()["id"]
    return dataset_id


async def push(http: aiohttp.ClientSession, sb: SandboxHandle, ds: str, records: Any) -> Reply:
    return await fetch(http, "POST", dbx(sb, f"/v1/datasets/{ds}/data"), json={"records": records})


async def metrics(http: aiohttp.ClientSession, sb: SandboxHandle, ds: str, ing: str) -> Any:
    r = await fetch(http, "GET", dbx(sb, f"/v1/datasets/{ds}/ingestions/{ing}"))
    assert r.status == 200, r.text
    return r.json()


async def test_primary_keys_make_a_retried_record_overwrite_instead_of_duplicating(
    sandbox: SandboxFactory,
) -> None:
    """A record whose primary key is stored overwrites it (counted as overwritten), so the
    dataset holds each key once; the dump shows exactly what is stored."""
    sb = await sandbox(events=10)
    async with aiohttp.ClientSession(headers=KEY) as http:
        ds = await make_dataset(http, sb, ["id"])
        first = await push(http, sb, ds, [{"id": "a", "n": 1}, {"id": "b", "n": 2}])
        again = await push(http, sb, ds, [{"id": "b", "n": 3}, {"id": "c", "n": 4}])
        assert first.status == again.status == 200
        assert first.json()["status"] == "success"
        m = await metrics(http, sb, ds, again.json()["ingestionId"])
        dump = await fetch(http, "GET", dbx(sb, f"/_sandbox/datasets/{ds}/records"))
    assert m["status"] == "completed"
    assert m["metrics"]["ingestionMetrics"] == {
        "receivedRecordsCount": 2,
        "appendedRecordsCount": 1,
        "rejectedRecordsCount": 0,
        "overwrittenRecordsCount": 1,
    }
    assert m["metrics"]["datasetMetrics"]["totalDatasetRecordsCount"] == 3
    assert sorted((r["id"], r["n"]) for r in dump.json()["records"]) == [
        ("a", 1),
        ("b", 3),
        ("c", 4),
    ]


async def test_without_primary_keys_every_record_appends(sandbox: SandboxFactory) -> None:
    """A dataset without primary keys keeps a retried record twice."""
    sb = await sandbox(events=10)
    async with aiohttp.ClientSession(headers=KEY) as http:
        ds = await make_dataset(http, sb)
        await push(http, sb, ds, [{"id": "a"}])
        await push(http, sb, ds, [{"id": "a"}])
    assert sb.state.databox.store.datasets[ds].records == [{"id": "a"}, {"id": "a"}]


async def test_invalid_records_are_rejected_alone_with_their_reason(
    sandbox: SandboxFactory,
) -> None:
    """A record of the wrong type or without its primary key is rejected; the rest of the
    request is stored, and the ingestion names each rejected record and why."""
    sb = await sandbox(events=10)
    async with aiohttp.ClientSession(headers=KEY) as http:
        ds = await make_dataset(http, sb, ["id"])
        r = await push(
            http,
            sb,
            ds,
            [{"id": "a", "n": 1}, {"id": "b", "n": "one"}, {"n": 2}, {"id": "c", "n": 3}],
        )
        m = await metrics(http, sb, ds, r.json()["ingestionId"])
    assert r.status == 200
    counts = m["metrics"]["ingestionMetrics"]
    assert (counts["appendedRecordsCount"], counts["rejectedRecordsCount"]) == (2, 2)
    assert [(e["code"], e["field"]) for e in m["errors"]] == [
        ("TYPE_MISMATCH", "records[1].n"),
        ("MISSING_PRIMARY_KEY", "records[2].id"),
    ]


async def test_errors_come_in_one_envelope(sandbox: SandboxFactory) -> None:
    """No key -> 401, more than 100 records -> 400, unknown dataset -> 404: each as
    {requestId, status: error, errors: [{code, message, field, type}]}."""
    sb = await sandbox(events=10)
    async with aiohttp.ClientSession() as http:
        no_key = await fetch(http, "GET", dbx(sb, "/v1/auth/validate-key"))
        bad_key = await fetch(
            http, "GET", dbx(sb, "/v1/auth/validate-key"), headers={"x-api-key": "nope"}
        )
    async with aiohttp.ClientSession(headers=KEY) as http:
        good = await fetch(http, "GET", dbx(sb, "/v1/auth/validate-key"))
        ds = await make_dataset(http, sb, ["id"])
        too_many = await push(http, sb, ds, [{"id": str(i)} for i in range(101)])
        missing = await push(http, sb, "no-such-dataset", [{"id": "a"}])
    assert good.status == 200
    for reply, status, code in (
        (no_key, 401, "UNAUTHORIZED"),
        (bad_key, 401, "UNAUTHORIZED"),
        (too_many, 400, "VALIDATION_ERROR"),
        (missing, 404, "NOT_FOUND"),
    ):
        body = reply.json()
        assert reply.status == status
        assert body["status"] == "error" and body["requestId"]
        assert body["errors"][0]["code"] == code
        assert set(body["errors"][0]) == {"code", "message", "field", "type"}
    assert sb.state.databox.store.datasets[ds].records == []


async def test_rate_limit_answers_429_with_retry_after_on_the_injected_clock(
    sandbox: SandboxFactory,
) -> None:
    """Beyond the per-second budget a request gets 429 and Retry-After; once the clock has
    moved on, requests pass again."""
    sb = await sandbox(events=10, databox=DataboxConfig(rate_limit=5))
    async with aiohttp.ClientSession(headers=KEY) as http:
        statuses = [
            (await fetch(http, "GET", dbx(sb, "/v1/auth/validate-key"))).status for _ in range(5)
        ]
        limited = await fetch(http, "GET", dbx(sb, "/v1/auth/validate-key"))
        sb.clock.advance(0.2)
        after = await fetch(http, "GET", dbx(sb, "/v1/auth/validate-key"))
    assert statuses == [200] * 5
    assert limited.status == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    assert after.status == 200


async def test_a_lost_response_still_stores_the_records(sandbox: SandboxFactory) -> None:
    """p_lost: the data is stored but the client sees 504; p_5xx: 503 and nothing stored."""
    lost = await sandbox(events=10, databox=DataboxConfig(p_lost=1.0))
    down = await sandbox(events=10, databox=DataboxConfig(p_5xx=1.0))
    async with aiohttp.ClientSession(headers=KEY) as http:
        ds_lost = await make_dataset(http, lost, ["id"])
        r_lost = await push(http, lost, ds_lost, [{"id": "a"}])
    assert r_lost.status == 504
    assert lost.state.databox.store.datasets[ds_lost].records == [{"id": "a"}]
    async with aiohttp.ClientSession(headers=KEY) as http:
        r_down = await fetch(http, "POST", dbx(down, "/v1/data-sources"), json={"title": "x"})
    assert r_down.status == 503 and down.state.databox.store.data_sources == {}


async def test_ingestions_process_asynchronously_and_list_newest_first(
    sandbox: SandboxFactory,
) -> None:
    """An ingestion reports 'processing' (no metrics) until its processing time has passed
    on the sandbox clock; the list pages newest first."""
    sb = await sandbox(events=10, databox=DataboxConfig(processing_s=2.0))
    async with aiohttp.ClientSession(headers=KEY) as http:
        ds = await make_dataset(http, sb, ["id"])
        first = (await push(http, sb, ds, [{"id": "a"}])).json()["ingestionId"]
        sb.clock.advance(1)
        second = (await push(http, sb, ds, [{"id": "b"}])).json()["ingestionId"]
        early = await metrics(http, sb, ds, first)
        sb.clock.advance(1.5)
        listed = await fetch(http, "GET", dbx(sb, f"/v1/datasets/{ds}/ingestions?pageSize=10"))
    assert early["status"] == "processing" and "metrics" not in early
    items = listed.json()["ingestions"]
    assert [i["ingestionId"] for i in items] == [second, first]
    assert [i["status"] for i in items] == ["processing", "completed"]
