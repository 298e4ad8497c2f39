"""A third-party Python source through the entry-point group, on the same pipeline as
DataSync: its own table, shards and status; exactly once; resumable; quarantine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from importlib import metadata

import asyncpg
import pytest

from etl.cli.pipeline_sync import sync_python
from etl.errors import ConfigError
from etl.pipeline import PipelineOptions
from etl.read.status import read_status
from etl.sources.registry import ENTRY_POINT_GROUP, available, describe, find, find_source
from tests.plugins.ticks import MeterSource

OPTIONS = replace(PipelineOptions(), page_size=100, shards=4, span_ms=2_000_000, tick_s=0.05)


def _eps():
    return [metadata.EntryPoint("meter", "tests.plugins.ticks:source", ENTRY_POINT_GROUP)]


async def _loaded(db_url: str) -> list[int]:
    conn = await asyncpg.connect(db_url)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM meter_readings ORDER BY id")]
    finally:
        await conn.close()


def test_a_python_source_is_found_listed_and_described():
    """`[etl.sources] meter = "pkg:source"` returning a Source: found as itself, listed as
    python, and `etl discover` shows its table, key and typed columns; `etl check` says
    it has nothing to check."""
    found = find_source("meter", _eps)
    assert isinstance(found, MeterSource)
    assert {s.name: s.kind for s in available(_eps)}["meter"] == "python"
    with pytest.raises(ConfigError, match="Python source: `etl sync meter`"):
        find("meter", _eps)  # what `etl check`/`etl auth` use: nothing to check there
    (readings,) = describe("meter", _eps).streams
    assert (readings.table, readings.primary_key) == ("meter_readings", ("id",))
    assert [(c.name, c.type) for c in readings.columns] == [
        ("id", "bigint"),
        ("at", "timestamp"),
        ("kwh", "number"),
    ]


async def test_a_python_source_loads_every_record_once_and_quarantines_a_bad_one(db_url):
    """The entry point's source syncs through the pipeline into its own table: every good
    reading once, the one without a value in stream_quarantine, `etl status` shows it."""
    source = find_source("meter", _eps)
    assert isinstance(source, MeterSource)
    result = await sync_python("meter", source, db_url, options=OPTIONS)
    assert (result.status, result.inserted, result.quarantined) == ("succeeded", 1999, 1)
    assert await _loaded(db_url) == [n for n in range(2000) if n != 7]
    status = await read_status(db_url)
    (stream,) = status.streams
    assert (stream.source, stream.stream, stream.status) == ("meter", "readings", "succeeded")
    assert (stream.rows, stream.quarantined) == (1999, 1)


async def test_a_stopped_python_source_resumes_where_it_stopped(db_url):
    """Stopped after a few pages (a signal), the run ends partial; the next run resumes the
    unfinished shards and the table holds every reading exactly once."""
    source = MeterSource(3000)
    stop = asyncio.Event()
    source.on_fetch = lambda n: stop.set() if n == 6 else None
    first = await sync_python("meter", source, db_url, options=OPTIONS, stop=stop)
    assert first.status == "partial" and 0 < first.inserted < 3000
    source.on_fetch = None
    second = await sync_python("meter", source, db_url, options=OPTIONS)
    assert second.status == "succeeded"
    assert first.inserted + second.inserted == 3000
    assert await _loaded(db_url) == list(range(3000))
