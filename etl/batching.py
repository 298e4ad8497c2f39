"""One fetched page -> one batch for the loader, and consecutive batches -> one transaction.

Pure: no I/O, and nothing of any one source: the page's records become rows through its
``Stream.transform``. ``advance`` also moves the shard's in-memory state (position,
cursor, status) to what the batch's checkpoint will commit.
"""

from __future__ import annotations

from etl.models import (
    Batch,
    Checkpoint,
    Page,
    Position,
    Quarantined,
    ShardState,
    Stream,
    TransformResult,
)


def _lower(stream: Stream, shard: ShardState) -> int | None:
    return None if shard.lower_ts is None else shard.lower_ts - stream.boundary_slack_ms


def transform_for(
    stream: Stream, shard: ShardState, page: Page, max_text: int = 1 << 60
) -> TransformResult:
    """``page`` validated against ``shard``'s bounds (the shard is not moved)."""
    return stream.transform(
        page.events,
        shard_id=shard.shard_id,
        lower_ts=_lower(stream, shard),
        upper_ts=shard.upper_ts,
        max_text=max_text,
    )


def advance(
    stream: Stream, shard: ShardState, page: Page, result: TransformResult | None = None
) -> Batch:
    """The batch of ``page`` for ``shard``; the shard is done when the API has no more pages
    or (time ranges) the page is empty or reached below the shard's lower bound (minus the
    stream's slack). ``result`` is the page's ``transform_for`` when the caller already has
    it; its records still incomplete are quarantined. A chain's mark commits with every
    page of an ordered stream, else with its last."""
    lower = _lower(stream, shard)
    if result is None:
        result = transform_for(stream, shard, page)
    if stream.split == "time_range":
        reached_bottom = lower is not None and result.min_ts is not None and result.min_ts <= lower
        done = not page.has_more or not page.events or reached_bottom
    else:
        done = not page.has_more
    mark = result.mark if stream.ordered or done else None
    position = page.cursor_position or result.last
    if position is not None:
        top = shard.position.ts_ms if shard.position is not None else shard.upper_ts
        if stream.split == "time_range" and not done and top is not None:
            shard.fetched += len(page.events) - result.out_of_range
            shard.fetched_ms += max(0, top - position.ts_ms)
        shard.position = position
    shard.cursor = None if done else page.next_cursor
    shard.status = "done" if done else "running"
    return Batch(
        records=result.records,
        quarantined=result.quarantined + result.incomplete,
        checkpoint=Checkpoint(shard.shard_id, shard.position, shard.cursor, done, 1, mark),
        received=len(page.events),
        out_of_range=result.out_of_range,
        repeats=result.duplicates,
    )


def fill_incomplete(stream: Stream, result: TransformResult, again: TransformResult) -> int:
    """Complete copies from a re-read of the same page (``again``) replace ``result``'s
    incomplete records (matched by the stream's key); returns how many were filled in.
    Other records of ``again`` are ignored: ``result`` keeps its own rows, positions and
    counts."""
    if not result.incomplete:
        return 0
    key = stream.key_index
    copies = {r[key]: r for r in again.records}
    still: list[Quarantined] = []
    for q in result.incomplete:
        rec = copies.get(q.event_id) if q.event_id is not None else None
        if rec is None:
            still.append(q)
        else:
            result.records.append(rec)
    filled = len(result.incomplete) - len(still)
    result.incomplete = still
    return filled


def merge(batches: list[Batch]) -> Batch:
    """Consecutive batches of one shard as one transaction (the last checkpoint wins)."""
    if len(batches) == 1:
        return batches[0]
    last = batches[-1].checkpoint
    return Batch(
        records=[r for b in batches for r in b.records],
        quarantined=[q for b in batches for q in b.quarantined],
        checkpoint=Checkpoint(
            shard_id=last.shard_id,
            position=last.position,
            cursor=last.cursor,
            done=last.done,
            pages=sum(b.checkpoint.pages for b in batches),
            mark=next(
                (b.checkpoint.mark for b in reversed(batches) if b.checkpoint.mark is not None),
                None,
            ),
        ),
        received=sum(b.received for b in batches),
        out_of_range=sum(b.out_of_range for b in batches),
        repeats=sum(b.repeats for b in batches),
        overwrite=any(b.overwrite for b in batches),
    )


def skip_record(
    stream: Stream,
    shard: ShardState,
    position: Position,
    cursor: str | None,
    quarantined: Quarantined,
) -> Batch:
    """The batch that steps ``shard`` over one record that cannot be read: the record goes
    to quarantine, the checkpoint to ``position`` (the record's) with ``cursor`` past it."""
    lower = _lower(stream, shard)
    done = lower is not None and position.ts_ms <= lower
    shard.position = position
    shard.cursor = None if done else cursor
    shard.status = "done" if done else "running"
    return Batch(
        records=[],
        quarantined=[quarantined],
        checkpoint=Checkpoint(shard.shard_id, position, shard.cursor, done, 1),
        received=1,
    )
