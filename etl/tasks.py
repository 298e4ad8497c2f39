"""Task mode: one `etl ingest` is task I of N of an orchestrator (an Airflow mapped task, a
Kubernetes Indexed Job's pod, a Dagster partition) and loads only its share of the plan.

The plan (the shards in ``ingest_progress``) is made once, by whichever task plans first
under the planning lock; every task then takes the shards whose *stable index* is ``I`` mod
``N``. The stable index is a shard's number in its plan (``full-07`` is 7, ``inc-…-02`` is
2); a shard split off another (``full-07/<ts>``) keeps its root's number, so work stealing
never leaves a task's share, and a retried task finds exactly its shards again, whatever
machine it runs on. Pure: no I/O.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_NUMBER = re.compile(r"-(\d+)$")


def stable_index(shard_id: str) -> int:
    """The number a shard is dealt by: the trailing ``-NN`` of its root id (the part before
    any ``/`` of a split), else a CRC-32 of the root (stable across processes and machines,
    unlike ``hash``)."""
    root = shard_id.split("/", 1)[0]
    m = _NUMBER.search(root)
    if m is not None:
        return int(m.group(1))
    return zlib.crc32(root.encode())


@dataclass(frozen=True, slots=True)
class TaskShare:
    """Share ``index`` of ``count`` (0 <= index < count). ``offset`` shifts the numbers of
    one source's shards into a fleet's positions (``etl.fleet``): shard k is at k + offset."""

    index: int
    count: int
    offset: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"share index {self.index} is not in 0..{self.count - 1}")
        if self.offset < 0:
            raise ValueError(f"share offset {self.offset} is negative")

    def owns(self, shard_id: str) -> bool:
        return self.owns_number(stable_index(shard_id))

    def owns_number(self, number: int) -> bool:
        """Whether the shard numbered ``number`` in its plan is in this share."""
        return (number + self.offset) % self.count == self.index

    @property
    def label(self) -> str:
        return f"task {self.index} of {self.count}"
