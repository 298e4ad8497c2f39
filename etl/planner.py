"""Pure planning: how the stream is cut into shards, and how a run continues.

A shard covers the half-open time slice ``lower_ts < ts <= upper_ts`` (None: unbounded).
Neighbouring shards share a boundary value, so no event belongs to two shards and none
falls between them, whatever the timestamps (equal ones included).
"""

from __future__ import annotations

import math

from etl.models import Position, ShardState

DAY_MS = 86_400_000


def full_plan(
    head: Position, *, shards: int, span_ms: int, prefix: str = "full"
) -> list[ShardState]:
    """Cut ``(head - span, head]`` into ``shards - 1`` equal slices plus an open-ended tail.

    The tail shard (``lower_ts`` None) takes whatever lies older than the assumed span, so
    a wrong guess about the data's age costs speed, never events.
    """
    top = head.ts_ms
    if shards <= 1:
        return [ShardState(f"{prefix}-00", lower_ts=None, upper_ts=top)]
    slices = shards - 1
    bottom = top - span_ms
    bounds = [top - (span_ms * k) // slices for k in range(slices + 1)]
    plan = [
        ShardState(f"{prefix}-{k:02d}", lower_ts=bounds[k + 1], upper_ts=bounds[k])
        for k in range(slices)
    ]
    plan.append(ShardState(f"{prefix}-{slices:02d}", lower_ts=None, upper_ts=bottom))
    return plan


def covered_upper(shards: list[ShardState]) -> int | None:
    """The newest timestamp below which everything is loaded, if every shard is done."""
    if not shards or any(s.status != "done" for s in shards):
        return None
    uppers = [s.upper_ts for s in shards if s.upper_ts is not None]
    return max(uppers) if uppers else None


REPAIR_PREFIX = "repair-"


def repair_plan(
    targets: list[int], shards: list[ShardState], *, gap_ms: int = 600_000
) -> list[ShardState]:
    """Shards that re-read the ranges around ``targets`` (epoch-ms timestamps of events that
    need a complete copy), so that a later read can repair them.

    Targets within ``gap_ms`` of each other share one shard ``(first - 1, last]``. A target
    already inside a *done* repair shard is left alone: its range was re-read, and the API
    had no complete copy then (re-reading it on every run would cost requests for nothing).
    """
    tried = [
        (s.lower_ts, s.upper_ts)
        for s in shards
        if s.shard_id.startswith(REPAIR_PREFIX) and s.status == "done"
    ]
    todo = sorted(
        t
        for t in set(targets)
        if not any(lo is not None and hi is not None and lo < t <= hi for lo, hi in tried)
    )
    plan: list[ShardState] = []
    start = prev = None
    for t in [*todo, None]:
        if start is not None and prev is not None and (t is None or t - prev > gap_ms):
            plan.append(
                ShardState(f"{REPAIR_PREFIX}{prev}-{start - 1}", lower_ts=start - 1, upper_ts=prev)
            )
            start = None
        if t is not None:
            start = t if start is None else start
            prev = t
    return plan


def density(shards: list[ShardState]) -> float | None:
    """Events per millisecond over the bounded part of what is loaded, if known."""
    bounded = [
        s
        for s in shards
        if s.lower_ts is not None
        and s.upper_ts is not None
        and not s.shard_id.startswith(REPAIR_PREFIX)
    ]
    span = sum(s.upper_ts - s.lower_ts for s in bounded if s.upper_ts and s.lower_ts)
    events = sum(s.events for s in bounded)
    return events / span if span > 0 and events > 0 else None


def incremental_plan(
    covered: int,
    head: Position,
    *,
    overlap_ms: int,
    shards: int = 1,
    events_per_ms: float | None = None,
    events_per_shard: int = 50_000,
) -> list[ShardState]:
    """Shards for what is newer than ``covered``, re-reading ``overlap_ms`` below it.

    The overlap catches events that arrive late with a timestamp just under the old head;
    re-reading known events is harmless (the load ignores duplicates). The new range is cut
    into as many shards as its expected size calls for (one when the density is unknown).
    """
    lower = covered - overlap_ms
    if head.ts_ms <= covered:
        return []
    span = head.ts_ms - lower
    expected = (events_per_ms or 0.0) * span
    count = max(1, min(shards, int(expected // events_per_shard) + 1))
    bounds = [head.ts_ms - (span * k) // count for k in range(count + 1)]
    return [
        ShardState(f"inc-{head.ts_ms}-{k:02d}", lower_ts=bounds[k + 1], upper_ts=bounds[k])
        for k in range(count)
    ]


def remaining_events(shard: ShardState) -> float | None:
    """Events a shard still has to fetch, from its own density so far, or, before its first
    page, from the density it was split off at (``split``: the parent's reading).

    None when it cannot be told (no page yet, no density); infinite for the open-ended tail.
    """
    if shard.upper_ts is None:
        return None
    if shard.position is None or shard.events <= 0:
        if shard.position is not None or shard.fetched_ms <= 0 or shard.fetched <= 0:
            return None
        if shard.lower_ts is None:
            return float("inf")
        return shard.fetched / shard.fetched_ms * max(0, shard.upper_ts - shard.lower_ts)
    if shard.lower_ts is None:
        return float("inf")
    done_ms = max(1, shard.upper_ts - shard.position.ts_ms)
    return shard.events / done_ms * max(0, shard.position.ts_ms - shard.lower_ts)


def split(shard: ShardState, *, page_size: int = 0, free: bool = False) -> ShardState | None:
    """Give the older half of ``shard``'s remaining range to a new shard.

    ``shard`` is to keep ``(mid, current]``; the new shard gets ``(lower, mid]``: no gap,
    no overlap. The open-ended tail keeps as much time again as it has covered, and the new
    shard takes everything older. With ``page_size``, the cut moves to where ``shard``'s
    last page ends (``_page_end``), so the split costs no short page; with ``free``, not
    at all when it would cost a request by the shard's density (None). The new
    shard starts with ``shard``'s density (``fetched``): it can be told apart, and split
    again page-aligned, before its first page. ``shard`` is not changed: the caller
    persists the split, then sets ``shard.lower_ts = new.upper_ts``.
    """
    if shard.status == "done":
        return None
    current = shard.position.ts_ms if shard.position is not None else shard.upper_ts
    if current is None:
        return None
    if shard.lower_ts is None:
        if shard.upper_ts is None or shard.upper_ts <= current:
            return None
        mid = current - (shard.upper_ts - current)
    else:
        if current - shard.lower_ts < 2:
            return None
        mid = shard.lower_ts + (current - shard.lower_ts) // 2
        if page_size > 0:
            cut = _page_end(shard, current, mid, page_size, free=free)
            if cut is None:
                return None
            mid = cut
    new = ShardState(f"{shard.shard_id}/{mid}", lower_ts=shard.lower_ts, upper_ts=mid)
    new.fetched, new.fetched_ms = shard.fetched, shard.fetched_ms
    return new


def _page_end(
    shard: ShardState, current: int, mid: int, page_size: int, *, free: bool = False
) -> int | None:
    """A cut near ``mid`` where ``shard``'s last page ends: its kept part ``(cut, current]``
    holds a whole number of pages by the density it has read at (``fetched``), less a
    margin for the estimate's error, so that page is nearly full instead of half empty on
    average (every shard's last page is short; a budget counts requests, not events).

    ``mid`` when the density is not known yet; None when the cut leaves the range, and
    with ``free`` when the split would cost a request by that density: the new part's last
    page within the margin of full (it would overflow into one more page) or of empty (the
    margin pushed it over a page boundary: unsplit, those events fit in the kept part's
    last page)."""
    if shard.fetched < page_size or shard.fetched_ms <= 0 or shard.lower_ts is None:
        return mid
    per_ms = shard.fetched / shard.fetched_ms
    pages = max(1, round(per_ms * (current - mid) / page_size))
    keep = pages * page_size
    # Poisson noise of the count, and the density's own error, both ~2 sigma
    margin = 2 * (math.sqrt(keep) + keep / math.sqrt(shard.fetched)) + 0.01 * page_size
    cut = current - math.ceil((keep - margin) / per_ms)
    if not shard.lower_ts < cut < current:
        return None
    last = (per_ms * (cut - shard.lower_ts)) % page_size  # the new part's last page
    if free and not margin < last < page_size - margin:
        return None
    return cut
