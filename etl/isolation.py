"""A page that never decodes (or is too large) does not block its shard.

``BrokenPage`` from a lane makes the shard's page size halve (``limit``), so the range is
asked again in smaller pages around the broken record; after a page that reads, the size
doubles back. At a single record, ``step_over`` makes the batch that quarantines its raw
bytes and moves the shard's checkpoint past it (its position is what the lane could read
from the broken bytes). Pure bookkeeping: the pipeline does the fetching and the queueing.
"""

from __future__ import annotations

from etl.batching import skip_record
from etl.errors import BrokenPage
from etl.models import Batch, Position, Quarantined, RunCounters, ShardState, Stream

KEPT_RAW_BYTES = 64 * 1024  # of an unreadable record, kept in quarantine


class Isolation:
    def __init__(self, stream: Stream, page_size: int, counters: RunCounters) -> None:
        self.stream = stream
        self.page_size = page_size
        self.counters = counters
        self._limits: dict[str, int] = {}  # shards isolating a broken record: their page size
        # ids of the records quarantined: shards overlap by the stream's boundary slack (and
        # a split shard's in-flight page may cross into the new one), so one unreadable
        # record can be met twice; the table keeps it once, the count must too
        self._unreadable: set[str] = set()

    def limit(self, shard: ShardState) -> int:
        return self._limits.get(shard.shard_id, self.page_size)

    def read(self, shard: ShardState, limit: int) -> None:
        """A page of ``limit`` was read: past the broken record, grow back."""
        if limit < self.page_size:
            self._limits[shard.shard_id] = min(self.page_size, limit * 2)

    def broken(self, shard: ShardState, limit: int) -> int | None:
        """A page of ``limit`` is broken: the smaller size to ask next, or None at one
        record (then ``step_over``)."""
        extra = self.counters.extra
        extra["broken_pages"] = extra.get("broken_pages", 0) + 1
        if limit <= 1:
            return None
        self._limits[shard.shard_id] = limit // 2
        return limit // 2

    def step_over(self, shard: ShardState, exc: BrokenPage) -> Batch | None:
        """The batch that quarantines the one broken record and moves past it; None when
        not even its position could be read."""
        if exc.after is None:
            return None
        position = Position(*exc.after)
        text = exc.body[:KEPT_RAW_BYTES].decode("utf-8", "replace")
        reason = f"unreadable record ({len(exc.body):,} bytes): {exc}"
        if position.id not in self._unreadable:
            self._unreadable.add(position.id)
            extra = self.counters.extra
            extra["unreadable_records"] = extra.get("unreadable_records", 0) + 1
        self._limits[shard.shard_id] = 1
        return skip_record(
            self.stream, shard, position, exc.cursor, Quarantined(reason, text, position.id)
        )
