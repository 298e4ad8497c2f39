"""The Databox Ingestion API (v1) client: every answer becomes data or an ``etl.errors`` error.

    401/403           DestinationAuthError  (the key; the message says which variable)
    429               DestinationTransient  with ``retry_after_s`` from Retry-After
    5xx, no answer    DestinationTransient  (a lost answer may have been stored: the caller
                                              retries into a dataset with primary keys)
    other 4xx         DestinationRejected   with the envelope's ``errors``

The key travels only in the ``x-api-key`` header; no message carries it.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from etl.errors import DestinationAuthError, DestinationRejected, DestinationTransient

KEY_VARIABLE = "DATABOX_API_KEY"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    request_id: str | None
    body: dict[str, Any]


def retry_after_s(value: str | None, now_epoch: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None if absent or garbage."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


def _summary(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    errors = body.get("errors")
    if not isinstance(errors, list):
        return "", []
    items = [e for e in errors if isinstance(e, dict)]
    text = "; ".join(
        f"{e.get('code', '?')}: {e.get('message', '')}"
        + (f" ({e['field']})" if e.get("field") else "")
        for e in items
    )
    return text, items


class DataboxClient:
    """``async with DataboxClient(url, key) as dbx: await dbx.push(dataset_id, records)``."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DataboxClient:
        self._session = aiohttp.ClientSession(
            headers={"x-api-key": self._key, "Accept": "application/json"},
            timeout=self._timeout,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(self, method: str, path: str, body: object = None) -> Answer:
        if self._session is None:
            raise RuntimeError("DataboxClient is not open")
        what = f"Databox {method} {path.split('?')[0]}"
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {} if data is None else {"Content-Type": "application/json"}
        try:
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                status, rid = resp.status, resp.headers.get("x-request-id")
                retry = resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DestinationTransient(f"{what}: no answer ({type(exc).__name__})") from exc
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        payload: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        rid = payload.get("requestId") or rid
        text, items = _summary(payload)
        if status in (401, 403):
            raise DestinationAuthError(
                f"Databox refused the API key ({status} {text or 'unauthorized'}); "
                f"check {KEY_VARIABLE}",
                http_status=status,
                request_id=rid,
            )
        if status == 429 or status >= 500:
            raise DestinationTransient(
                f"{what}: {status} {text or raw[:80].decode(errors='replace').strip()}",
                retry_after_s=retry_after_s(retry, time.time()) if status == 429 else None,
                http_status=status,
                request_id=rid,
            )
        if status >= 400:
            raise DestinationRejected(
                f"{what}: {status} {text}", errors=items, http_status=status, request_id=rid
            )
        if not payload:
            raise DestinationTransient(
                f"{what}: {status} without a JSON body", http_status=status, request_id=rid
            )
        return Answer(status, rid, payload)

    # -- the calls ---------------------------------------------------------------------

    async def validate_key(self) -> None:
        await self.request("GET", "/v1/auth/validate-key")

    async def create_data_source(self, title: str) -> int:
        accounts = (await self.request("GET", "/v1/accounts")).body.get("accounts") or [{}]
        body = {"accountId": accounts[0].get("id"), "title": title, "timezone": "UTC"}
        return int((await self.request("POST", "/v1/data-sources", body)).body["id"])

    async def create_dataset(
        self, title: str, data_source_id: int, primary_keys: tuple[str, ...]
    ) -> str:
        body = {"title": title, "dataSourceId": data_source_id, "primaryKeys": list(primary_keys)}
        return str((await self.request("POST", "/v1/datasets", body)).body["id"])

    async def dataset_exists(self, dataset_id: str) -> bool:
        try:
            await self.request("GET", f"/v1/datasets/{dataset_id}")
        except DestinationRejected as exc:
            if exc.http_status == 404:
                return False
            raise
        return True

    async def push(self, dataset_id: str, records: list[dict[str, Any]]) -> Answer:
        """POST the records (<= 100); the answer's body has ``ingestionId``."""
        return await self.request("POST", f"/v1/datasets/{dataset_id}/data", {"records": records})

    async def ingestion(self, dataset_id: str, ingestion_id: str) -> dict[str, Any]:
        path = f"/v1/datasets/{dataset_id}/ingestions/{ingestion_id}"
        return (await self.request("GET", path)).body

    async def ingestions(self, dataset_id: str, page: int, page_size: int) -> list[dict[str, Any]]:
        path = f"/v1/datasets/{dataset_id}/ingestions?page={page}&pageSize={page_size}"
        items = (await self.request("GET", path)).body.get("ingestions")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
