"""Small asyncio helpers of the run: racing work against a stop event, unwrapping TaskGroups."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from etl.errors import EtlError

T = TypeVar("T")


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Run ``work`` unless ``stop`` fires first (then ``work`` is cancelled): (finished, result)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    return False, None


def first_error(group: BaseExceptionGroup[EtlError]) -> EtlError:
    """The first of our errors, however deeply nested TaskGroups wrapped it."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return first_error(exc)
        return exc
    raise AssertionError("empty exception group")
