"""The seam for HTTP destinations fed from the outbox (``etl.models.Destination`` is the
in-transaction side: ``PostgresSink.write`` commits the rows, the checkpoint and the outbox
rows together; a ``PushTarget`` is what the pusher then drains them into).

A destination that cannot commit our checkpoint in its own transaction implements this:
datasets with primary keys, requests of records answered with an ingestion id, and a way
to look those ingestions up. ``etl.push.databox.DataboxClient`` is the first. Errors are
``etl.errors`` destination errors (auth, transient with Retry-After, rejected with items).
"""

from __future__ import annotations

from typing import Any, Protocol

from etl.push.databox import Answer


class PushTarget(Protocol):
    async def dataset_exists(self, dataset_id: str) -> bool: ...

    async def create_data_source(self, title: str) -> int: ...

    async def create_dataset(
        self, title: str, data_source_id: int, primary_keys: tuple[str, ...]
    ) -> str: ...

    async def push(self, dataset_id: str, records: list[dict[str, Any]]) -> Answer:
        """Send at most 100 records; a 200's body names the ``ingestionId``."""
        ...

    async def ingestion(self, dataset_id: str, ingestion_id: str) -> dict[str, Any]: ...

    async def ingestions(
        self, dataset_id: str, page: int, page_size: int
    ) -> list[dict[str, Any]]: ...
