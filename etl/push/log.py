"""One delivery record per push request: the ``delivery_log`` row and the JSON line.

Every request the pusher makes to send records (each attempt, success or not) is recorded:
destination, time of sending, dataset, rows and column names, attempt, HTTP status, request
id, ingestion id, accepted and rejected counts (known once the ingestion is verified, then
updated in place and logged again as ``"event": "verified"``), success and the error
message. Never the key: errors are built from statuses and the API's envelope only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from etl.pg import Conn

_INSERT = """
INSERT INTO delivery_log (provider, destination, dataset, sent_at, duration_ms, rows_received,
    rows_written, duplicates, quarantined, columns, success, error, attempt, http_status,
    request_id, ingestion_id, accepted, rejected)
VALUES ($1, $1, $2, $3, $4, $5, $6, 0, 0, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""


@dataclass(frozen=True, slots=True)
class PushDelivery:
    destination: str
    dataset: str
    sent_at: dt.datetime
    duration_ms: float
    rows: int
    columns: tuple[str, ...]
    attempt: int
    http_status: int | None
    request_id: str | None
    ingestion_id: str | None
    accepted: int | None
    rejected: int | None
    success: bool
    error: str | None
    event: str = "request"  # or "verified": the ingestion's counts became known

    def to_json(self) -> str:
        return json.dumps(
            {
                "event": self.event,
                "destination": self.destination,
                "provider": self.destination,
                "dataset": self.dataset,
                "sent_at": self.sent_at.isoformat(timespec="milliseconds"),
                "rows": self.rows,
                "columns": list(self.columns),
                "attempt": self.attempt,
                "http_status": self.http_status,
                "request_id": self.request_id,
                "ingestion_id": self.ingestion_id,
                "accepted": self.accepted,
                "rejected": self.rejected,
                "success": self.success,
                "error": self.error,
                "duration_ms": round(self.duration_ms, 1),
            },
            ensure_ascii=False,
        )


async def insert(conn: Conn, d: PushDelivery) -> None:
    await conn.execute(
        _INSERT,
        d.destination,
        d.dataset,
        d.sent_at,
        d.duration_ms,
        d.rows,
        d.accepted or 0,
        list(d.columns),
        d.success,
        d.error,
        d.attempt,
        d.http_status,
        d.request_id,
        d.ingestion_id,
        d.accepted,
        d.rejected,
    )


async def set_counts(conn: Conn, ingestion_id: str, accepted: int, rejected: int) -> None:
    await conn.execute(
        "UPDATE delivery_log SET accepted = $2, rejected = $3, rows_written = $2"
        " WHERE ingestion_id = $1",
        ingestion_id,
        accepted,
        rejected,
    )
