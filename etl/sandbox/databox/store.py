"""What the Databox sandbox remembers: datasets, their rows, and every ingestion.

Pure state on an injected clock (no HTTP): ``ingest`` applies one accepted request the way
the Ingestion API documents it (/work/shared/databox-api.md). A dataset's column types are
fixed by the first record that carries the column; a record whose value has another type,
or that lacks a primary-key column, is rejected on its own (a *partial* reject: the request
is still accepted). With primary keys, a record whose key is stored overwrites the stored
row (counted as overwritten); without them, every record appends.

Per-record reasons are not published by Databox; the sandbox reports them in the
ingestion's ``errors`` (``field`` = ``records[i].column``), the shape of its error envelope.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

JsonRecord = dict[str, Any]


def value_type(value: object) -> str:
    """Databox-ish column type of a JSON value: string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


@dataclass(frozen=True, slots=True)
class RecordError:
    code: str
    message: str
    field: str
    type: str = "validation"

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "field": self.field, "type": self.type}


@dataclass
class Ingestion:
    ingestion_id: str
    dataset_id: str
    created_at: float
    received: int
    appended: int
    rejected: int
    overwritten: int
    errors: list[RecordError]
    completes_at: float  # processing is asynchronous: ``processing`` until then


@dataclass
class DatasetState:
    dataset_id: str
    title: str
    data_source_id: int
    primary_keys: tuple[str, ...]
    created_at: float
    columns: dict[str, str] = field(default_factory=dict)  # column -> type
    rows: dict[tuple[str, ...], JsonRecord] = field(default_factory=dict)  # with primary keys
    appended_rows: list[JsonRecord] = field(default_factory=list)  # without
    ingestions: dict[str, Ingestion] = field(default_factory=dict)
    received_total: int = 0  # every record ever received (accepted requests), for tests
    stored_bytes: int = 0  # JSON size of what is stored, kept as records come and go

    @property
    def records(self) -> list[JsonRecord]:
        return list(self.rows.values()) if self.primary_keys else list(self.appended_rows)

    @property
    def count(self) -> int:
        return len(self.rows) if self.primary_keys else len(self.appended_rows)

    def size_mb(self) -> float:
        return round(self.stored_bytes / 1e6, 3)


class DataboxStore:
    """Accounts, data sources, datasets and ingestions of one sandbox."""

    ACCOUNT_ID = 1

    def __init__(self, processing_s: float = 0.0) -> None:
        self.processing_s = processing_s
        self.data_sources: dict[int, dict[str, Any]] = {}
        self.datasets: dict[str, DatasetState] = {}
        self._ids = itertools.count(1)

    def add_data_source(self, title: str, timezone: str, now: float) -> dict[str, Any]:
        source_id = next(self._ids)
        source = {"id": source_id, "accountId": self.ACCOUNT_ID, "title": title}
        source["timezone"] = timezone
        self.data_sources[source_id] = source
        return source

    def add_dataset(
        self, title: str, data_source_id: int, primary_keys: tuple[str, ...], now: float
    ) -> DatasetState:
        dataset_id = str(uuid.uuid4())
        ds = DatasetState(dataset_id, title, data_source_id, primary_keys, now)
        self.datasets[dataset_id] = ds
        return ds

    def ingest(self, ds: DatasetState, records: list[JsonRecord], now: float) -> Ingestion:
        """Apply one accepted request; returns its ingestion (counts and per-record errors)."""
        appended = overwritten = 0
        errors: list[RecordError] = []
        for index, record in enumerate(records):
            problem = self._check(ds, index, record)
            if problem is not None:
                errors.append(problem)
                continue
            for column, value in record.items():
                if value is not None:
                    ds.columns.setdefault(column, value_type(value))
            size = len(json.dumps(record))
            if ds.primary_keys:
                key = tuple(str(record[k]) for k in ds.primary_keys)
                old = ds.rows.get(key)
                if old is not None:
                    overwritten += 1
                    ds.stored_bytes -= len(json.dumps(old))
                else:
                    appended += 1
                ds.rows[key] = dict(record)
            else:
                ds.appended_rows.append(dict(record))
                appended += 1
            ds.stored_bytes += size
        ds.received_total += len(records)
        ingestion = Ingestion(
            ingestion_id=str(uuid.uuid4()),
            dataset_id=ds.dataset_id,
            created_at=now,
            received=len(records),
            appended=appended,
            rejected=len(errors),
            overwritten=overwritten,
            errors=errors,
            completes_at=now + self.processing_s,
        )
        ds.ingestions[ingestion.ingestion_id] = ingestion
        return ingestion

    @staticmethod
    def _check(ds: DatasetState, index: int, record: object) -> RecordError | None:
        where = f"records[{index}]"
        if not isinstance(record, dict) or not record:
            return RecordError("INVALID_RECORD", "A record must be a non-empty object", where)
        for key in ds.primary_keys:
            if record.get(key) is None:
                message = f"Primary key column '{key}' is missing"
                return RecordError("MISSING_PRIMARY_KEY", message, f"{where}.{key}")
        for column, value in record.items():
            kind = value_type(value)
            if kind == "json":
                message = "Nested objects and arrays are not supported"
                return RecordError("INVALID_VALUE", message, f"{where}.{column}")
            expected = ds.columns.get(column)
            if expected is not None and kind not in (expected, "null"):
                return RecordError(
                    "TYPE_MISMATCH",
                    f"Column '{column}' is {expected}, got {kind}",
                    f"{where}.{column}",
                )
        return None
