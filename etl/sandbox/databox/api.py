"""The Databox Ingestion API (v1) surface of the sandbox, mounted under ``/databox``.

Order per request: auth (401 ``UNAUTHORIZED``) -> the key's token bucket (429 with
``Retry-After``) -> a drawn 5xx (nothing stored) -> the handler; a data request drawn as
*lost* is stored and then answered 504, the nastiest case a client must survive.
Every error uses the one envelope ``{requestId, status: "error", errors: [{code, message,
field, type}]}``. ``/databox/_sandbox/...`` (no key, no limit) dumps what was received, so
tests and benchmarks can prove exactly-once delivery from another process.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from etl.sandbox.clock import SandboxClock
from etl.sandbox.databox.config import DATABOX_PREFIX, DataboxConfig
from etl.sandbox.databox.store import DataboxStore, DatasetState, Ingestion
from etl.sandbox.responses import json_bytes


class TokenBucket:
    """``rate`` tokens per second per key, holding at most one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Databox:
    """One sandbox's Databox surface: config, store, limiter, fault draws and counters."""

    def __init__(self, config: DataboxConfig, clock: SandboxClock, *, limited: bool) -> None:
        self.config = config
        self.clock = clock
        self.limited = limited
        self.store = DataboxStore(config.processing_s)
        self.bucket = TokenBucket(config.rate_limit)
        self.rng = random.Random(config.fault_seed)
        self.statuses: Counter[int] = Counter()
        self.requests_by_route: Counter[str] = Counter()
        # called after each data request is stored, before it is answered (tests: a kill
        # of the client at exactly that moment is the lost-answer case)
        self.on_stored: Callable[[], None] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path[len(DATABOX_PREFIX) :]
        resp = await self._handle(request, path)
        self.statuses[resp.status] += 1
        return resp

    async def _handle(self, request: web.Request, path: str) -> web.Response:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["_sandbox"]:
            return self._internal(parts[1:])
        if parts[:1] != ["v1"]:
            return error(404, "NOT_FOUND", "Not found")
        key = request.headers.get("x-api-key")
        if not key or key not in self.config.keys:
            return error(401, "UNAUTHORIZED", "Key is missing or invalid", kind="permission")
        self.requests_by_route[_label(request.method, parts)] += 1
        now = self.clock.time()
        if self.limited:
            wait = self.bucket.take(key, now)
            if wait > 0:
                return error(
                    429,
                    "TOO_MANY_REQUESTS",
                    f"Too many requests. {self.config.rate_limit:g}/sec is allowed",
                    kind="rate_limit",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            draw = self.rng.random()
            if draw < self.config.p_5xx:
                return error(503, "SERVICE_UNAVAILABLE", "Service unavailable", kind="server")
            lost = draw < self.config.p_5xx + self.config.p_lost
        else:
            lost = False
        return await self._route(request, parts[1:], now, lost)

    async def _route(
        self, request: web.Request, parts: list[str], now: float, lost: bool
    ) -> web.Response:
        method = request.method
        if parts == ["auth", "validate-key"] and method == "GET":
            return ok({"status": "success", "message": "Key is valid"})
        if parts == ["accounts"] and method == "GET":
            return ok({"accounts": [{"id": DataboxStore.ACCOUNT_ID, "name": "Sandbox"}]})
        if parts == ["data-sources"] and method == "POST":
            body = await _json(request)
            if not isinstance(body, dict) or not isinstance(body.get("title"), str):
                return error(400, "VALIDATION_ERROR", "title is required", field="title")
            tz = str(body.get("timezone") or "UTC")
            return ok(self.store.add_data_source(body["title"], tz, now))
        if parts == ["datasets"]:
            if method == "POST":
                return await self._create_dataset(request, now)
            if method == "GET":
                return ok({"datasets": [_dataset_json(d) for d in self.store.datasets.values()]})
        if len(parts) >= 2 and parts[0] == "datasets":
            ds = self.store.datasets.get(parts[1])
            if ds is None:
                return error(404, "NOT_FOUND", "Dataset not found", field="datasetId")
            return await self._dataset(request, ds, parts[2:], now, lost)
        return error(404, "NOT_FOUND", "Not found")

    async def _create_dataset(self, request: web.Request, now: float) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            return error(400, "VALIDATION_ERROR", "title is required", field="title")
        source_id = body.get("dataSourceId")
        if source_id not in self.store.data_sources:
            return error(400, "VALIDATION_ERROR", "unknown dataSourceId", field="dataSourceId")
        keys = body.get("primaryKeys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            return error(400, "VALIDATION_ERROR", "primaryKeys: column names", field="primaryKeys")
        ds = self.store.add_dataset(body["title"], source_id, tuple(keys), now)
        return ok(_dataset_json(ds))

    async def _dataset(
        self, request: web.Request, ds: DatasetState, rest: list[str], now: float, lost: bool
    ) -> web.Response:
        method = request.method
        if not rest:
            if method == "DELETE":
                del self.store.datasets[ds.dataset_id]
                return ok({"status": "success"})
            return ok(_dataset_json(ds))
        if rest == ["purge"] and method == "POST":
            ds.rows.clear()
            ds.appended_rows.clear()
            ds.stored_bytes = 0
            return ok({"status": "success"})
        if rest == ["data"] and method == "POST":
            return await self._data(request, ds, now, lost)
        if rest == ["ingestions"] and method == "GET":
            return self._list_ingestions(request, ds, now)
        if len(rest) == 2 and rest[0] == "ingestions" and method == "GET":
            ing = ds.ingestions.get(rest[1])
            if ing is None:
                return error(404, "NOT_FOUND", "Ingestion not found", field="ingestionId")
            return ok(_ingestion_json(ds, ing, now))
        return error(404, "NOT_FOUND", "Not found")

    async def _data(
        self, request: web.Request, ds: DatasetState, now: float, lost: bool
    ) -> web.Response:
        raw = await request.read()
        if len(raw) > self.config.max_body_bytes:
            return error(413, "PAYLOAD_TOO_LARGE", "Request body is larger than 1 MB")
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "VALIDATION_ERROR", "Body is not valid JSON", field="body")
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return error(400, "VALIDATION_ERROR", "records must be a non-empty array", "records")
        if len(records) > self.config.max_records:
            return error(
                400,
                "VALIDATION_ERROR",
                f"At most {self.config.max_records} records per request",
                field="records",
            )
        ing = self.store.ingest(ds, records, now)
        if self.on_stored is not None:
            self.on_stored()
        if lost:
            return web.Response(status=504, text="upstream request timeout")
        return ok(
            {
                "status": "success",
                "ingestionId": ing.ingestion_id,
                "message": f"{len(records)} records accepted for processing",
            }
        )

    def _list_ingestions(self, request: web.Request, ds: DatasetState, now: float) -> web.Response:
        try:
            page = max(1, int(request.query.get("page", "1")))
            size = min(100, max(1, int(request.query.get("pageSize", "20"))))
        except ValueError:
            return error(400, "VALIDATION_ERROR", "page and pageSize are integers", "page")
        newest = sorted(ds.ingestions.values(), key=lambda i: i.created_at, reverse=True)
        items = newest[(page - 1) * size : page * size]
        return ok(
            {
                "ingestions": [_ingestion_json(ds, i, now) for i in items],
                "page": page,
                "pageSize": size,
                "total": len(newest),
            }
        )

    def _internal(self, parts: list[str]) -> web.Response:
        if parts == ["stats"]:
            datasets = {
                d.dataset_id: {"received": d.received_total, "records": d.count}
                for d in self.store.datasets.values()
            }
            statuses = {str(k): v for k, v in sorted(self.statuses.items())}
            return ok({"statuses": statuses, "datasets": datasets})
        if len(parts) == 3 and parts[0] == "datasets" and parts[2] == "records":
            ds = self.store.datasets.get(parts[1])
            if ds is None:
                return error(404, "NOT_FOUND", "Dataset not found", field="datasetId")
            return ok({**_dataset_json(ds), "records": ds.records})
        return error(404, "NOT_FOUND", "Not found")


def _label(method: str, parts: list[str]) -> str:
    named = ["{id}" if i == 2 and parts[1] == "datasets" else p for i, p in enumerate(parts)]
    return f"{method} /" + "/".join(named[:4])


def _dataset_json(ds: DatasetState) -> dict[str, Any]:
    return {
        "id": ds.dataset_id,
        "title": ds.title,
        "dataSourceId": ds.data_source_id,
        "primaryKeys": list(ds.primary_keys),
        "columns": [{"name": c, "type": t} for c, t in ds.columns.items()],
        "recordsCount": ds.count,
        "receivedRecordsCount": ds.received_total,
    }


def _ingestion_json(ds: DatasetState, ing: Ingestion, now: float) -> dict[str, Any]:
    done = now >= ing.completes_at
    body: dict[str, Any] = {
        "ingestionId": ing.ingestion_id,
        "datasetId": ds.dataset_id,
        "status": "completed" if done else "processing",
    }
    if done:
        body["metrics"] = {
            "ingestionMetrics": {
                "receivedRecordsCount": ing.received,
                "appendedRecordsCount": ing.appended,
                "rejectedRecordsCount": ing.rejected,
                "overwrittenRecordsCount": ing.overwritten,
            },
            "datasetMetrics": {
                "columnsCount": len(ds.columns),
                "datasetSizeMB": ds.size_mb(),
                "totalDatasetRecordsCount": ds.count,
            },
        }
        body["errors"] = [e.to_json() for e in ing.errors]
    return body


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def ok(body: dict[str, Any]) -> web.Response:
    rid = str(uuid.uuid4())
    payload = json_bytes({"requestId": rid, **body})
    headers = {"x-request-id": rid}
    return web.Response(body=payload, content_type="application/json", headers=headers)


def error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    kind: str = "validation",
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The envelope ``{requestId, status: "error", errors: [{code, message, field, type}]}``."""
    rid = str(uuid.uuid4())
    body = {
        "requestId": rid,
        "status": "error",
        "errors": [{"code": code, "message": message, "field": field, "type": kind}],
    }
    return web.Response(
        body=json_bytes(body),
        status=status,
        content_type="application/json",
        headers={"x-request-id": rid, **(headers or {})},
    )
