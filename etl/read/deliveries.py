"""The delivery log (``delivery_log``), newest first, filtered: what `etl deliveries` shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from etl.pg import Conn
from etl.read.db import run_query

STATUSES = ("ok", "failed")


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    destination: str
    dataset: str | None
    sent_at: dt.datetime
    rows: int
    columns: list[str]
    attempt: int | None
    http_status: int | None
    request_id: str | None
    ingestion_id: str | None
    accepted: int | None
    rejected: int | None
    success: bool
    error: str | None
    duration_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "destination": self.destination,
            "dataset": self.dataset,
            "sent_at": self.sent_at.isoformat(timespec="milliseconds"),
            "rows": self.rows,
            "columns": self.columns,
            "attempt": self.attempt,
            "http_status": self.http_status,
            "request_id": self.request_id,
            "ingestion_id": self.ingestion_id,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "success": self.success,
            "error": self.error,
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 1),
        }


async def _query(
    conn: Conn,
    destination: str | None,
    status: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
) -> list[DeliveryRow]:
    rows = await conn.fetch(
        """
        SELECT id, destination, dataset, sent_at, rows_received, columns, attempt, http_status,
               request_id, ingestion_id, accepted, rejected, success, error, duration_ms
        FROM delivery_log
        WHERE ($1::text IS NULL OR destination = $1)
          AND ($2::boolean IS NULL OR success = $2)
          AND ($3::timestamptz IS NULL OR sent_at >= $3)
          AND ($4::timestamptz IS NULL OR sent_at < $4)
        ORDER BY sent_at DESC, id DESC
        LIMIT $5
        """,
        destination,
        None if status is None else status == "ok",
        since,
        until,
        limit,
    )
    return [
        DeliveryRow(
            id=int(r["id"]),
            destination=r["destination"],
            dataset=r["dataset"],
            sent_at=r["sent_at"],
            rows=int(r["rows_received"]),
            columns=list(r["columns"]),
            attempt=r["attempt"],
            http_status=r["http_status"],
            request_id=r["request_id"],
            ingestion_id=r["ingestion_id"],
            accepted=r["accepted"],
            rejected=r["rejected"],
            success=bool(r["success"]),
            error=r["error"],
            duration_ms=r["duration_ms"],
        )
        for r in rows
    ]


async def read_deliveries(
    target: Conn | str,
    *,
    destination: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> list[DeliveryRow]:
    """Newest first; ``status`` is ``ok`` or ``failed``; [since, until) on ``sent_at``."""
    return await run_query(
        target, "reading the delivery log", _query, destination, status, since, until, limit
    )
