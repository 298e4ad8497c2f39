"""One /metrics for several `etl serve` workers on one port (``--workers``, SO_REUSEPORT).

Each worker counts its own requests and cache answers. Every ``period_s`` it writes them to
``<directory>/worker-<k>.json`` (written aside, then renamed: a reader never sees half a
file); /metrics, whichever worker answers it, adds the other workers' files to its own live
counters. So the request counts are summed over the server, the other workers' part at most
``period_s`` old; the sync's gauges are read from the database as before.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any


class Peers:
    def __init__(self, directory: Path, worker: int, *, period_s: float = 1.0) -> None:
        self.directory = directory
        self.worker = worker
        self.period_s = period_s

    def _path(self, worker: int) -> Path:
        return self.directory / f"worker-{worker}.json"

    def publish(self, doc: dict[str, Any]) -> None:
        tmp = self.directory / f".worker-{self.worker}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self._path(self.worker))

    def others(self) -> list[dict[str, Any]]:
        """The other workers' last published counters (a file that cannot be read is left
        out of this scrape)."""
        out = []
        for path in self.directory.glob("worker-*.json"):
            if path == self._path(self.worker):
                continue
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    async def publishing(self, snapshot: Callable[[], dict[str, Any]]) -> AsyncIterator[None]:
        """An aiohttp cleanup context: publish every ``period_s`` while the app runs."""

        async def loop() -> None:
            while True:
                self.publish(snapshot())
                await asyncio.sleep(self.period_s)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        self.publish(snapshot())  # the counts of this worker's last requests stay summed
