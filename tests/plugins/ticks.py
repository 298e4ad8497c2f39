"""A third-party Python source (``etl.sources.plugins``): a meter's readings, one a second.

It implements ``etl.models.Source``, the Protocol DataSync implements, with everything in
memory (the "API" is a list): newest first by (time, id), pages after a position, one
``Stream`` with its own columns, key and transform. An entry point would name ``source``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from etl.models import (
    Page,
    Position,
    Quarantined,
    ShardState,
    Stream,
    StreamColumn,
    TransformResult,
)

NEWEST_MS = 1_771_533_513_000


def _key(r: dict[str, Any]) -> tuple[int, str]:
    return (r["at"], f"{r['id']:012d}")


def transform(
    records: list[Any],
    *,
    shard_id: str | None,
    lower_ts: int | None,
    upper_ts: int | None,
    max_text: int,
) -> TransformResult:
    """Readings -> (id, at, kwh) rows; one without a value is quarantined."""
    out = TransformResult(shard_id=shard_id)
    lo = lower_ts if lower_ts is not None else -(2**63)
    hi = upper_ts if upper_ts is not None else 2**63
    for r in records:
        at, rid = _key(r)
        out.last = Position(at, rid)
        out.min_ts = at if out.min_ts is None else min(out.min_ts, at)
        if not lo < at <= hi:
            out.out_of_range += 1
        elif r.get("kwh") is None:
            out.quarantined.append(Quarantined("kwh missing", repr(r), str(r["id"])))
        else:
            when = dt.datetime.fromtimestamp(at / 1000, dt.UTC)
            out.records.append((r["id"], when, float(r["kwh"])))
    return out


READINGS = Stream(
    name="readings",
    columns=(
        StreamColumn("id", "bigint", nullable=False),
        StreamColumn("at", "timestamp", nullable=False),
        StreamColumn("kwh", "number", nullable=False),
    ),
    primary_key=("id",),
    transform=transform,
    split="time_range",
    table="meter_readings",
)


class _Lane:
    name = "meter"
    concurrency = 3

    def __init__(self, source: MeterSource) -> None:
        self.source = source

    async def acquire(self) -> float | None:
        return None

    def budget_ready(self) -> bool:
        return True

    async def fetch(
        self,
        shard: ShardState,
        limit: int,
        *,
        gate: Callable[[], Awaitable[None]] | None = None,
        yield_throttled: bool = False,
        ticket: float | None = None,
    ) -> Page:
        self.source.requests += 1
        if self.source.on_fetch is not None:
            self.source.on_fetch(self.source.requests)
        if gate is not None:
            await gate()
        rows = self.source.readings
        if shard.position is not None:
            after = (shard.position.ts_ms, shard.position.id)
            start = next((i for i, r in enumerate(rows) if _key(r) < after), len(rows))
        elif shard.upper_ts is not None:
            start = next((i for i, r in enumerate(rows) if r["at"] <= shard.upper_ts), len(rows))
        else:
            start = 0
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        last = Position(*_key(page[-1])) if page else None
        return Page(page, more, "next" if more else None, len(rows), last)


class MeterSource:
    """A meter's readings, one a second (a third-party Python source)."""

    stream = READINGS

    def __init__(self, count: int = 2_000, *, broken: tuple[int, ...] = ()) -> None:
        self.readings = [
            {"id": n, "at": NEWEST_MS - n * 1000, "kwh": None if n in broken else n / 10}
            for n in range(count)
        ]
        self.requests = 0
        self.on_fetch: Callable[[int], None] | None = None
        self._lanes = [_Lane(self)]

    async def start(self) -> str:
        return "reading the meter"

    @property
    def strategy_used(self) -> str:
        return "meter"

    async def head(self) -> tuple[Position | None, int | None]:
        if not self.readings:
            return None, 0
        return Position(*_key(self.readings[0])), len(self.readings)

    async def contains(self, anchor: Position) -> bool:
        return any(_key(r) == (anchor.ts_ms, anchor.id) for r in self.readings)

    def lanes(self) -> list[_Lane]:
        return list(self._lanes)


def source() -> MeterSource:
    """The entry point: ``[project.entry-points."etl.sources"] meter = "...ticks:source"``."""
    return MeterSource(broken=(7,))
