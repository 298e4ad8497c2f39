"""PostgresSink against a real PostgreSQL (no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from etl.errors import ConfigError, EtlError, LockHeld, SinkError
from etl.models import (
    Batch,
    Checkpoint,
    Delivery,
    Position,
    Quarantined,
    Record,
    RunCounters,
    ShardState,
    StreamColumn,
)
from etl.sink import SCHEMA_VERSION, PostgresSink, migrate, redact_dsn
from etl.source.datasync import EVENTS, events_stream

T0 = dt.datetime(2026, 1, 27, 19, 19, 13, 629000, tzinfo=dt.UTC)


def make_record(i: int, *, event_id: str | None = None) -> Record:
    ts = T0 - dt.timedelta(seconds=i)
    return (
        event_id or str(uuid.UUID(int=i + 1)),
        str(uuid.UUID(int=10_000 + i % 7)),
        None if i % 3 == 0 else str(uuid.UUID(int=20_000 + i % 5)),
        "page_view",
        f"name {i}" if i % 2 else None,
        ts,
        json.dumps({"page": f"/p/{i}", "n": i, "nested": {"a": [1, 2]}}),
        json.dumps({"device": "ios", "browser": "safari"}) if i % 2 else None,
        str(int(ts.timestamp() * 1000)),
    )


def make_batch(
    records: list[Record],
    *,
    shard: str = "s1",
    done: bool = False,
    quarantined: list[Quarantined] | None = None,
    cursor: str | None = "c1",
    position: Position | None = None,
) -> Batch:
    if position is None and records:
        last = records[-1]
        position = Position(int(last[5].timestamp() * 1000), last[0])
    q = quarantined or []
    return Batch(
        records=records,
        quarantined=q,
        checkpoint=Checkpoint(shard, position, cursor, done, pages=1),
        received=len(records) + len(q),
    )


async def one(db_url: str, sql: str) -> object:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def rows(db_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.fixture(params=[True, False], ids=["direct", "staged"])
async def shard_sink(db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[PostgresSink]:
    """A sink with shards s1 and s2; writes with and without the direct-COPY fast path."""
    async with PostgresSink(db_url, stream=EVENTS, direct_copy=request.param) as sink:
        await sink.add_shards([ShardState("s1", None, None), ShardState("s2", 0, 1000)])
        yield sink


# -- migration ------------------------------------------------------------------------------


async def test_migration_is_idempotent(db_url: str) -> None:
    """Every step applies once on a fresh database, and a second migration changes nothing."""
    conn = await asyncpg.connect(db_url)
    try:
        assert await migrate(conn) == SCHEMA_VERSION
        assert await migrate(conn) == 0
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == SCHEMA_VERSION
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            )
        }
        assert {
            "events",
            "ingest_progress",
            "ingest_runs",
            "quarantine",
            "delivery_log",
            "ingest_source",
        } <= tables
    finally:
        await conn.close()
    async with PostgresSink(db_url, stream=EVENTS):  # a third time through the sink
        pass


async def test_concurrent_migrations(db_url: str) -> None:
    """Four processes migrating at once: exactly one applies the schema, the others find it done."""
    conns = [await asyncpg.connect(db_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(applied) == [0, 0, 0, SCHEMA_VERSION]
    finally:
        for c in conns:
            await c.close()


async def test_concurrent_sinks_start(db_url: str) -> None:
    """Several sinks opening the same fresh database at once all start."""

    async def open_one() -> None:
        async with PostgresSink(db_url, stream=EVENTS) as s:
            assert await s.load_shards() == []

    await asyncio.gather(*(open_one() for _ in range(3)))


# -- write ----------------------------------------------------------------------------------


async def test_write_inserts_and_counts_duplicates(shard_sink: PostgresSink, db_url: str) -> None:
    """A batch repeating loaded ids inserts only the new ones and counts the rest as duplicates."""
    recs = [make_record(i) for i in range(100)]
    r1 = await shard_sink.write(make_batch(recs[:60]))
    assert (r1.inserted, r1.duplicates, r1.quarantined) == (60, 0, 0)
    r2 = await shard_sink.write(make_batch(recs))  # 60 seen, 40 new
    assert (r2.inserted, r2.duplicates) == (40, 60)
    # duplicates inside one batch
    r3 = await shard_sink.write(make_batch([make_record(500), make_record(500)]))
    assert (r3.inserted, r3.duplicates) == (1, 1)
    assert await one(db_url, "SELECT count(*) FROM events") == 101

    row = (
        await rows(db_url, "SELECT * FROM events WHERE id = '00000000-0000-0000-0000-000000000002'")
    )[0]
    assert row["occurred_at"] == T0 - dt.timedelta(seconds=1)
    assert json.loads(row["properties"]) == {"page": "/p/1", "n": 1, "nested": {"a": [1, 2]}}
    assert json.loads(row["session"]) == {"device": "ios", "browser": "safari"}
    assert row["timestamp_raw"] == recs[1][8]
    assert row["name"] == "name 1"
    assert row["ingested_at"] is not None

    (s1,) = [s for s in await shard_sink.load_shards() if s.shard_id == "s1"]
    assert s1.events == 101
    assert s1.pages == 3
    assert s1.status == "running"
    totals = (await rows(db_url, "SELECT * FROM ingest_totals"))[0]
    assert (totals["events"], totals["duplicates"], totals["pages"]) == (101, 61, 3)


async def test_an_incomplete_copy_of_a_loaded_event_is_a_duplicate(
    shard_sink: PostgresSink, db_url: str
) -> None:
    """An event already loaded complete that comes again without a field is counted as a
    duplicate (the run's counters add up), and no quarantine row is made for it."""
    rec = make_record(1)
    await shard_sink.write(make_batch([rec]))
    stripped = Quarantined("missing required fields: name", "{}", rec[0], ("name",))
    result = await shard_sink.write(make_batch([], quarantined=[stripped], position=None))
    assert (result.inserted, result.duplicates, result.quarantined) == (0, 1, 0)
    assert await one(db_url, "SELECT count(*) FROM quarantine") == 0


async def test_fresh_shard_overlapping_loaded_rows(shard_sink: PostgresSink, db_url: str) -> None:
    # s2 has only loaded new rows so far; its next batch overlaps s1's rows (a shard
    # boundary's slack): the overlap is counted as duplicates, the rest lands, nothing fails
    """A shard's first batch that overlaps rows another shard loaded falls back to the staged
    upsert: same counts, no error."""
    results = [
        await shard_sink.write(make_batch([make_record(i) for i in ids], shard=shard))
        for shard, ids in (
            ("s1", range(60)),
            ("s2", range(200, 250)),
            ("s2", range(50, 100)),  # overlaps s1's rows
            ("s2", range(100, 150)),
            ("s2", range(150, 200)),
        )
    ]
    assert [(r.inserted, r.duplicates) for r in results] == [
        (60, 0),
        (50, 0),
        (40, 10),
        (50, 0),
        (50, 0),
    ]
    # fast path: COPY while a shard meets only new ids; the overlapping batch is redone as
    # a staged upsert, and so is the shard's next one (a batch after an overlap often
    # overlaps too); once that one is clean, COPY again. The delivery log says which.
    direct = shard_sink.direct_copy
    expected = ["copy", "copy", "upsert", "upsert", "copy"] if direct else ["upsert"] * 5
    assert [r.loaded_by for r in results] == expected
    assert await one(db_url, "SELECT count(*) FROM events") == 250
    assert await one(db_url, "SELECT events FROM ingest_totals") == 250
    assert await one(db_url, "SELECT duplicates FROM ingest_totals") == 10
    log = await rows(db_url, "SELECT success FROM delivery_log ORDER BY id")
    assert [r["success"] for r in log] == [True] * 5


async def test_checkpoint_roundtrip_and_empty_batch(shard_sink: PostgresSink) -> None:
    """A batch moves its shard's checkpoint (position, cursor, pages); so does an empty one."""
    recs = [make_record(i) for i in range(10)]
    await shard_sink.write(make_batch(recs, cursor="abc"))
    (s1,) = [s for s in await shard_sink.load_shards() if s.shard_id == "s1"]
    assert s1.position == Position(int(recs[-1][5].timestamp() * 1000), recs[-1][0])
    assert s1.cursor == "abc"
    # an empty last page still moves the checkpoint (position None keeps the stored one)
    res = await shard_sink.write(make_batch([], cursor=None, done=True))
    assert (res.inserted, res.duplicates) == (0, 0)
    (s1b,) = [s for s in await shard_sink.load_shards() if s.shard_id == "s1"]
    assert s1b.status == "done"
    assert s1b.cursor is None
    assert s1b.position == s1.position
    assert s1b.pages == 2


async def test_failed_batch_changes_nothing(shard_sink: PostgresSink, db_url: str) -> None:
    """A batch the database rejects (here: a NUL byte PostgreSQL cannot store in jsonb)
    commits nothing, neither rows nor checkpoint, is recorded as failed in delivery_log, and
    leaves the pool usable."""
    good = [make_record(i) for i in range(5)]
    await shard_sink.write(make_batch(good, cursor="before"))
    before = await shard_sink.load_shards()
    bad = [make_record(i) for i in range(100, 110)]
    nul = make_record(999)
    bad.append((*nul[:6], '{"page": "/p/\\u0000"}', *nul[7:]))  # type: ignore[arg-type]
    with pytest.raises(SinkError, match="shard s1"):
        await shard_sink.write(
            make_batch(bad, cursor="after", quarantined=[Quarantined("bad ts", "{}", "e1")])
        )
    assert await one(db_url, "SELECT count(*) FROM events") == 5
    assert await one(db_url, "SELECT count(*) FROM quarantine") == 0
    assert await shard_sink.load_shards() == before
    log = await rows(db_url, "SELECT success, error, rows_written FROM delivery_log ORDER BY id")
    assert [r["success"] for r in log] == [True, False]
    assert log[1]["rows_written"] == 0
    assert log[1]["error"]
    # the pool is still usable afterwards
    r = await shard_sink.write(make_batch(bad[:-1]))
    assert r.inserted == 10


async def test_a_record_that_cannot_be_encoded_is_a_bug_not_a_database_failure(
    shard_sink: PostgresSink, db_url: str
) -> None:
    """transform only emits valid ids: a record asyncpg cannot even encode is our bug. It
    surfaces as itself (exit 1, report it), not as SinkError (exit 6), and commits nothing."""
    bad = [make_record(1), make_record(2, event_id="not-a-uuid")]
    with pytest.raises(ValueError, match="UUID"):
        await shard_sink.write(make_batch(bad))
    assert await one(db_url, "SELECT count(*) FROM events") == 0


async def test_write_unknown_shard_fails(sink: PostgresSink, db_url: str) -> None:
    """A batch for a shard without a progress row fails and commits nothing."""
    with pytest.raises(SinkError, match="no progress row"):
        await sink.write(make_batch([make_record(1)], shard="nope"))
    assert await one(db_url, "SELECT count(*) FROM events") == 0


async def test_concurrent_writes(shard_sink: PostgresSink, db_url: str) -> None:
    # two loaders, overlapping ids, different shards: no deadlock, exact counts
    """Two loaders writing overlapping ids for different shards at once: no deadlock, each id once,
    exact counts."""
    a = [make_record(i) for i in range(3000)]
    b = [make_record(i) for i in range(2000, 5000)]
    results = await asyncio.gather(
        shard_sink.write(make_batch(a, shard="s1")),
        shard_sink.write(make_batch(list(reversed(b)), shard="s2")),
    )
    assert sum(r.inserted for r in results) == 5000
    assert sum(r.duplicates for r in results) == 1000
    assert await one(db_url, "SELECT count(*) FROM events") == 5000
    assert await one(db_url, "SELECT events FROM ingest_totals") == 5000


async def test_quarantine_upsert(shard_sink: PostgresSink, db_url: str) -> None:
    """Quarantine keeps one row per event and reason, counting repeats; events without an id are
    keyed by their payload."""
    q = [
        Quarantined("unparseable timestamp", json.dumps({"id": "e1", "timestamp": "x"}), "e1"),
        Quarantined("unparseable timestamp", json.dumps({"id": "e1", "timestamp": "x"}), "e1"),
        Quarantined("missing id", '{"timestamp": 1}', None),
        Quarantined("not json", "{broken \x00 json", "e2"),
        Quarantined("nul escape", '{"a": "\\u0000"}', "e3"),
    ]
    r = await shard_sink.write(make_batch([], quarantined=q, position=None))
    assert r.quarantined == 5
    # re-fetched after a resume: no new rows, with or without an id; occurrences bumped
    await shard_sink.write(make_batch([], quarantined=q[:1] + q[2:3], position=None))
    got = await rows(
        db_url,
        "SELECT event_id, reason, payload, payload_text, occurrences, first_seen <= last_seen AS ok"
        " FROM quarantine ORDER BY id",
    )
    by_id = {(g["event_id"], g["reason"]): g for g in got}
    assert len(got) == 4  # e1, the id-less event (same payload: same row), e2, e3
    assert by_id[("e1", "unparseable timestamp")]["occurrences"] == 3
    assert by_id[(None, "missing id")]["occurrences"] == 2
    assert json.loads(by_id[("e1", "unparseable timestamp")]["payload"])["id"] == "e1"
    assert by_id[("e2", "not json")]["payload"] is None
    assert by_id[("e2", "not json")]["payload_text"] == "{broken \ufffd json"
    assert by_id[("e3", "nul escape")]["payload_text"] == '{"a": "\\u0000"}'
    assert all(g["ok"] for g in got)
    (s1,) = [s for s in await shard_sink.load_shards() if s.shard_id == "s1"]
    assert await one(db_url, "SELECT quarantined FROM ingest_progress WHERE shard_id='s1'") == 7
    assert s1.position is None


async def test_delivery_log_and_hook(db_url: str) -> None:
    """Each batch written is a delivery_log row and one call of the on_delivery hook, with the same
    figures."""
    seen: list[Delivery] = []
    async with PostgresSink(
        db_url, stream=EVENTS, run_id=42, provider="datasync", on_delivery=seen.append
    ) as s:
        await s.add_shards([ShardState("s1", None, None)])
        await s.write(make_batch([make_record(i) for i in range(7)]))
    log = await rows(db_url, "SELECT * FROM delivery_log")
    assert len(log) == 1
    entry = log[0]
    assert (entry["run_id"], entry["shard_id"], entry["provider"]) == (42, "s1", "datasync")
    assert (entry["rows_written"], entry["rows_received"], entry["success"]) == (7, 7, True)
    assert entry["columns"][0] == "id" and len(entry["columns"]) == 9
    assert len(seen) == 1 and seen[0].rows_written == 7 and seen[0].success


# -- shards ---------------------------------------------------------------------------------


async def test_shards_roundtrip(sink: PostgresSink) -> None:
    """Shards added are loaded back as they were; adding a known id again changes nothing."""
    shards = [
        ShardState("a", None, 1_000),
        ShardState("b", 1_000, 2_000, Position(1_500, "x"), "cur", "running", 0, 0),
        ShardState("c", 2_000, None, status="done"),
    ]
    await sink.add_shards(shards)
    await sink.add_shards([ShardState("a", 5, 6)])  # existing id: ignored
    assert await sink.load_shards() == shards


async def test_replace_shard_and_reset(shard_sink: PostgresSink, db_url: str) -> None:
    """A shard can be replaced by others once (its counts archived, totals kept); a reset retires
    every shard without touching events."""
    await shard_sink.write(make_batch([make_record(i) for i in range(10)], shard="s2"))
    halves = [ShardState("s2a", 0, 500), ShardState("s2b", 500, 1000)]
    assert await shard_sink.replace_shard("s2", halves) is True
    assert await shard_sink.replace_shard("s2", halves) is False  # gone
    assert [s.shard_id for s in await shard_sink.load_shards()] == ["s1", "s2a", "s2b"]
    assert await one(db_url, "SELECT events FROM ingest_totals") == 10

    assert await shard_sink.reset_progress() == 3
    assert await shard_sink.load_shards() == []
    assert await one(db_url, "SELECT count(*) FROM events") == 10  # never deleted
    assert await one(db_url, "SELECT events FROM ingest_totals") == 10


# -- runs -----------------------------------------------------------------------------------


async def test_runs_lifecycle(sink: PostgresSink, db_url: str) -> None:
    """A run is recorded from start to end with its counters and extra figures."""
    run_id = await sink.start_run("feed")
    assert sink.run_id == run_id
    counters = RunCounters(received=10, inserted=8, duplicates=2, requests=3, retries=1)
    counters.extra["lanes"] = 2
    await sink.heartbeat(counters)
    r = (await rows(db_url, f"SELECT * FROM ingest_runs WHERE run_id = {run_id}"))[0]
    assert (r["status"], r["strategy"], r["inserted"], r["retries"]) == ("running", "feed", 8, 1)
    assert json.loads(r["extra"]) == {"lanes": 2}
    assert r["pid"] and r["host"]
    counters.inserted = 9
    await sink.finish_run("partial", counters, "stopped by SIGTERM")
    r = (await rows(db_url, f"SELECT * FROM ingest_runs WHERE run_id = {run_id}"))[0]
    assert (r["status"], r["inserted"], r["error"]) == ("partial", 9, "stopped by SIGTERM")
    assert r["ended_at"] >= r["started_at"]
    with pytest.raises(ValueError):
        await sink.finish_run("running", counters)


async def test_stale_runs_marked_failed(db_url: str) -> None:
    """A run left running by a crash is marked failed by the next start, once its heartbeat is
    stale."""
    async with PostgresSink(db_url, stream=EVENTS) as s:
        old = await s.start_run("events")  # never finished: a crash
        fresh = await s.start_run("events")
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(
                f"UPDATE ingest_runs SET heartbeat_at = now() - interval '1 hour'"
                f" WHERE run_id = {old}"
            )
        finally:
            await conn.close()
        await s.start_run("events")  # without the lock: only the stale one
        got = {r["run_id"]: r for r in await rows(db_url, "SELECT * FROM ingest_runs")}
        assert got[old]["status"] == "failed" and "crashed" in got[old]["error"]
        assert got[fresh]["status"] == "running"
        await s.try_lock()
        latest = await s.start_run("events")  # with the lock: every other running run is dead
        got = {r["run_id"]: r for r in await rows(db_url, "SELECT * FROM ingest_runs")}
        assert [k for k, v in got.items() if v["status"] == "running"] == [latest]


# -- lock -----------------------------------------------------------------------------------


async def test_lock_contention(db_url: str) -> None:
    """A second ingest on the same database is refused at once with LockHeld naming the holder; the
    lock frees when the first closes."""
    async with (
        PostgresSink(db_url, stream=EVENTS) as first,
        PostgresSink(db_url, stream=EVENTS) as second,
    ):
        await first.try_lock()
        assert first.locked
        t = time.monotonic()
        with pytest.raises(LockHeld, match=r"another etl ingest is running .*\(pid \d+ on host"):
            await second.try_lock()
        assert time.monotonic() - t < 1.0
        assert not second.locked
        await first.unlock()
        await second.try_lock()
        assert second.locked
    # released by closing the sink
    async with PostgresSink(db_url, stream=EVENTS) as third:
        await third.try_lock()


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:s3cr%40t@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:@/etl?host=/tmp/x", "postgresql://u@/etl?host=/tmp/x"),
        ("postgres://h/db?user=u&password=pw", "postgres://h/db?user=u&password=***"),
        ("host=h user=u password=pw dbname=d", "host=h user=u password=*** dbname=d"),
        ("garbage", "<unparseable DSN>"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    """Every DSN form (URL, query password, key=value) prints with its password masked."""
    assert redact_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("dsn", "error", "says"),
    [
        # nothing listens on port 1
        ("postgresql://postgres:Hunter2SecretPw@127.0.0.1:1/etl", SinkError, "cannot connect"),
        (
            "postgresql://postgres:Hunter2SecretPw@no-such-host.invalid:5432/etl",
            SinkError,
            "cannot connect",
        ),
        # the user's input, not an outage: a configuration error (exit 2)
        (
            "postgresql://postgres:Hunter2SecretPw@127.0.0.1:notaport/etl",
            ConfigError,
            "not a usable PostgreSQL URL",
        ),
    ],
)
async def test_errors_never_contain_the_password(
    dsn: str, error: type[EtlError], says: str
) -> None:
    """A DSN that cannot be reached or parsed gives a clear error with the password masked,
    in the message and in the cause kept for debugging alike."""
    with pytest.raises(error) as info:
        async with PostgresSink(dsn, stream=EVENTS, connect_timeout=3):
            pass
    text = str(info.value)
    assert says in text
    assert "Hunter2SecretPw" not in text
    assert "***" in text
    assert "Hunter2SecretPw" not in repr(info.value.__cause__)
    with pytest.raises(error) as info2:
        sink = PostgresSink(dsn, stream=EVENTS, connect_timeout=3)
        await sink.try_lock()
    assert "Hunter2SecretPw" not in str(info2.value)


async def test_wrong_database_name(pg_server_url: str) -> None:
    """A database that does not exist is a clear SinkError, not a traceback."""
    from tests.fixtures_db import with_database

    with pytest.raises(SinkError, match="does not exist"):
        async with PostgresSink(with_database(pg_server_url, "etl_no_such_db"), stream=EVENTS):
            pass


def test_the_sink_serves_only_the_events_shaped_stream() -> None:
    """``PostgresSink`` loads the stream it is given; one of another shape (another table,
    other columns or key) is refused before any connection with ``ConfigError`` saying
    what differs and where such a stream goes, while DataSync's stream with other required
    fields (same shape) is accepted."""
    issues = dataclasses.replace(
        EVENTS, name="issues", columns=(StreamColumn("id", "integer", False),), table=""
    )
    with pytest.raises(ConfigError) as refused:
        PostgresSink("postgresql://nowhere.invalid/x", stream=issues)
    text = str(refused.value)
    assert "'issues'" in text and "table 'issues'" in text and "StreamSink" in text
    renamed = dataclasses.replace(EVENTS, table="events2")
    with pytest.raises(ConfigError, match="table 'events2'"):
        PostgresSink("postgresql://nowhere.invalid/x", stream=renamed)
    sink = PostgresSink("postgresql://nowhere.invalid/x", stream=events_stream(("id",)))
    assert sink.stream.table_name == "events"
