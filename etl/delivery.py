"""The local delivery log: one JSON line per batch written (or failed), next to the table.

``DeliveryLog(path)`` is a callable usable as ``PostgresSink(on_delivery=...)``. Each line::

    {"provider": "datasync", "sent_at": "2026-01-02T03:04:05.678+00:00", "run_id": 7,
     "shard_id": "s03", "rows_received": 5000, "rows_written": 4998, "duplicates": 2,
     "quarantined": 0, "columns": ["id", ...], "success": true, "error": null,
     "duration_ms": 41.2, "loaded_by": "copy"}

``loaded_by``: ``copy`` (straight into ``events``), ``upsert`` (through the staging table,
for a batch that overlapped loaded rows) or null (failed).

The file is opened in append mode and each line written with one ``write`` + ``flush`` (a
few hundred bytes: fast enough for the event loop, and whole lines even if two processes
append). When it exceeds ``max_bytes`` it is rotated to ``<name>.1`` … ``<name>.<backups>``.
A failing disk never breaks a load: the hook logs one warning and keeps trying.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import TextIO

from etl.models import Delivery

log = logging.getLogger(__name__)


def delivery_to_json(d: Delivery) -> str:
    return json.dumps(
        {
            "provider": d.provider,
            "sent_at": d.sent_at.isoformat(timespec="milliseconds"),
            "run_id": d.run_id,
            "shard_id": d.shard_id,
            "rows_received": d.rows_received,
            "rows_written": d.rows_written,
            "duplicates": d.duplicates,
            "quarantined": d.quarantined,
            "columns": list(d.columns),
            "success": d.success,
            "error": d.error,
            "duration_ms": round(d.duration_ms, 1),
            "loaded_by": d.loaded_by,
        },
        ensure_ascii=False,
    )


class DeliveryLog:
    """Appends ``Delivery`` records as JSON lines to ``path``; rotates past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = 20 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: TextIO | None = None
        self._warned = False

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __call__(self, delivery: Delivery) -> None:
        try:
            self.write_line(delivery_to_json(delivery))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write the delivery log %s: %s", self.path, exc)

    def write_line(self, line: str) -> None:
        file = self._open()
        if file.tell() >= self.max_bytes:
            self._rotate()
            file = self._open()
        file.write(line + "\n")
        file.flush()

    def _open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        return self._file

    def _rotate(self) -> None:
        self.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
