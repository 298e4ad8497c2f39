"""The database schema and its idempotent, concurrency-safe migration.

Every migration step runs in one transaction under a transaction-scoped advisory lock, so two
processes starting at once apply each step exactly once (the second waits, then finds the
step recorded in ``schema_version``). Steps are append-only: never edit a released one.

Tables
    events            one row per event (uuid PK); metadata in columns, details in jsonb
    ingest_progress   one row per shard: bounds, committed position/cursor, status, counters
    ingest_progress_archive  shard rows retired by ``reset_progress`` (their counters still count)
    ingest_runs       run history: status, counters, heartbeat, error, host/pid
    quarantine        events that could not be made valid; unique on (fingerprint, reason);
                      ``missing``/``resolved_at`` for incomplete events (schema 2)
    delivery_log      one row per batch written (or failed), and per push request (schema 7)
    ingest_source     which dataset the state belongs to (``etl.identity``; one row; schema 3)
    push_*            push destinations: datasets, the outbox, ingestions, rejects
                      (``etl.sink.schema_push``; schema 7)
    rate_budget       the rate budget shared by tasks on one API key, per lane; its log
                      ``rate_budget_log`` (``etl.sharedrate``; schema 9)
    posted_totals     one row: events recorded through `etl serve`'s POST /events (they have
                      no shard, so the progress counters do not hold them; schema 10)
    schema_version    applied migration steps
    rollup_*, purges  hourly/user/page rollups kept by the loader (``etl.sink.rollups``)
View
    ingest_totals     sums of the progress counters (live + archived): what ``etl status``
                      reports instead of COUNT(*) over events
"""

from __future__ import annotations

from etl.errors import SinkError
from etl.pg import Conn
from etl.sink.findings import FINDINGS_DDL
from etl.sink.rollups import INSERT_TRIGGER_DDL, ROLLUPS_DDL, V13_DDL
from etl.sink.schema_push import PUSH_DDL

SCHEMA_VERSION = 13

# pg_advisory locks are per database; two int4-sized constants ('etl' + 0 / 1).
MIGRATION_LOCK_KEY = 0x65746C01
INGEST_LOCK_KEY = 0x65746C00
# task mode (``etl.tasks``): tasks hold INGEST_LOCK_KEY shared, their share's lock
# (SHARE_LOCK_CLASS, index) exclusively, and PLANNING_LOCK_KEY while they plan
PLANNING_LOCK_KEY = 0x65746C03
SHARE_LOCK_CLASS = 0x65746C04

_V1 = """
CREATE TABLE IF NOT EXISTS events (
    id            uuid        PRIMARY KEY,
    session_id    uuid        NULL,
    user_id       uuid        NULL,
    type          text        NOT NULL,
    name          text        NULL,
    occurred_at   timestamptz NOT NULL,
    properties    jsonb       NOT NULL,
    session       jsonb       NULL,
    timestamp_raw text        NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_occurred_at_idx ON events (occurred_at);

CREATE TABLE IF NOT EXISTS ingest_progress (
    shard_id     text        PRIMARY KEY,
    lower_ts     bigint      NULL,
    upper_ts     bigint      NULL,
    position_ts  bigint      NULL,
    position_id  text        NULL,
    cursor       text        NULL,
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done')),
    events       bigint      NOT NULL DEFAULT 0,
    duplicates   bigint      NOT NULL DEFAULT 0,
    quarantined  bigint      NOT NULL DEFAULT 0,
    pages        bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NULL
);

CREATE TABLE IF NOT EXISTS ingest_progress_archive (
    LIKE ingest_progress,
    archived_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ingest_runs (
    run_id        bigserial   PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz NULL,
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    strategy      text        NOT NULL DEFAULT '',
    received      bigint      NOT NULL DEFAULT 0,
    inserted      bigint      NOT NULL DEFAULT 0,
    duplicates    bigint      NOT NULL DEFAULT 0,
    quarantined   bigint      NOT NULL DEFAULT 0,
    requests      bigint      NOT NULL DEFAULT 0,
    retries       bigint      NOT NULL DEFAULT 0,
    rate_limited  bigint      NOT NULL DEFAULT 0,
    cursor_resets bigint      NOT NULL DEFAULT 0,
    pages         bigint      NOT NULL DEFAULT 0,
    extra         jsonb       NOT NULL DEFAULT '{}',
    error         text        NULL,
    host          text        NULL,
    pid           integer     NULL
);
CREATE INDEX IF NOT EXISTS ingest_runs_status_idx ON ingest_runs (status);

CREATE TABLE IF NOT EXISTS quarantine (
    id           bigserial   PRIMARY KEY,
    event_id     text        NULL,
    shard_id     text        NULL,
    run_id       bigint      NULL,
    fingerprint  text        NOT NULL,  -- event_id, or md5 of the payload when it has none
    reason       text        NOT NULL,
    payload      jsonb       NULL,  -- the event as received, when it is valid JSON
    payload_text text        NULL,  -- ... otherwise the raw text
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    occurrences  integer     NOT NULL DEFAULT 1
);
-- re-reading a page after a resume must not store its bad events twice, id or no id
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_fingerprint_reason_uq
    ON quarantine (fingerprint, reason);

CREATE TABLE IF NOT EXISTS delivery_log (
    id            bigserial   PRIMARY KEY,
    run_id        bigint      NULL,
    shard_id      text        NULL,
    provider      text        NOT NULL,
    sent_at       timestamptz NOT NULL,
    duration_ms   double precision NULL,
    rows_received integer     NOT NULL,
    rows_written  integer     NOT NULL,
    duplicates    integer     NOT NULL,
    quarantined   integer     NOT NULL,
    columns       text[]      NOT NULL,
    success       boolean     NOT NULL,
    error         text        NULL
);
CREATE INDEX IF NOT EXISTS delivery_log_run_idx ON delivery_log (run_id, id);

-- jsonb if the text parses, else NULL (quarantine must never fail to store a payload).
CREATE OR REPLACE FUNCTION etl_try_jsonb(t text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE OR REPLACE VIEW ingest_totals AS
SELECT
    coalesce(sum(events), 0)::bigint      AS events,
    coalesce(sum(duplicates), 0)::bigint  AS duplicates,
    coalesce(sum(quarantined), 0)::bigint AS quarantined,
    coalesce(sum(pages), 0)::bigint       AS pages,
    count(*) FILTER (WHERE NOT archived)::bigint                      AS shards,
    count(*) FILTER (WHERE NOT archived AND status = 'done')::bigint  AS shards_done,
    max(updated_at)                       AS updated_at
FROM (
    SELECT events, duplicates, quarantined, pages, status, updated_at, false AS archived
    FROM ingest_progress
    UNION ALL
    SELECT events, duplicates, quarantined, pages, status, updated_at, true
    FROM ingest_progress_archive
) AS p;
"""

# A row is *stripped* when a field an event always carries is NULL (or properties empty):
# loaded from a response that had removed it (versions before 2 loaded such events as they
# came). The partial index holds only those rows: finding them costs nothing, and a complete
# copy arriving later repairs the row in place (etl.sink.batch).
STRIPPED_SQL = (
    "(session_id IS NULL OR user_id IS NULL OR name IS NULL OR session IS NULL"
    " OR properties = '{}'::jsonb)"
)
_V2 = f"""
CREATE INDEX IF NOT EXISTS events_stripped_idx ON events (occurred_at) WHERE {STRIPPED_SQL};
-- incomplete events (lacking required fields) quarantined until a complete copy arrives
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS missing text NULL;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS resolved_at timestamptz NULL;
CREATE INDEX IF NOT EXISTS quarantine_unresolved_idx ON quarantine (event_id)
    WHERE missing IS NOT NULL AND resolved_at IS NULL;
"""

# v3: the source identity; 'incomplete' runs; events out of a shard's range per run.
_V3 = """
CREATE TABLE IF NOT EXISTS ingest_source (
    name       text        PRIMARY KEY,
    identity   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS out_of_range bigint NOT NULL DEFAULT 0;
ALTER TABLE ingest_runs DROP CONSTRAINT IF EXISTS ingest_runs_status_check;
ALTER TABLE ingest_runs ADD CONSTRAINT ingest_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'incomplete'));
"""

_V8 = """
CREATE INDEX IF NOT EXISTS rollup_user_hours_user_idx ON rollup_user_hours (user_id, hour);
CREATE INDEX IF NOT EXISTS events_time_user_idx ON events (occurred_at, user_id);
DROP INDEX IF EXISTS events_occurred_at_idx;
DROP INDEX IF EXISTS events_user_idx;
"""

# v9: one limiter state per (key fingerprint, lane), changed under its row lock; the
# slots granted per task. Times are epoch seconds on the database's clock.
BUDGET_DDL = """
CREATE TABLE IF NOT EXISTS rate_budget (
    key_fp     text             NOT NULL,  -- HMAC-SHA-256 of API and key, never the key
    lane       text             NOT NULL,
    state      text             NOT NULL,  -- the limiter's state (JSON)
    holder     text             NOT NULL,  -- host:pid of the task that changed it last
    updated_at double precision NOT NULL,
    PRIMARY KEY (key_fp, lane)
);
CREATE TABLE IF NOT EXISTS rate_budget_log (
    key_fp text             NOT NULL,
    lane   text             NOT NULL,
    holder text             NOT NULL,
    at     double precision NOT NULL,
    slots  integer          NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_budget_log_at_idx ON rate_budget_log (key_fp, at);
"""

# v10: events posted to `etl serve` (no shard): counted here, in the insert's transaction
_V10 = """
CREATE TABLE IF NOT EXISTS posted_totals (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    events     bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

# v11: `etl events --user` and `etl purge --user` on one index range of the user, newest
# first (the hours of rollup_user_hours are no longer needed for it, nor their index)
_V11 = """
CREATE INDEX IF NOT EXISTS events_user_time_idx ON events (user_id, occurred_at, id);
DROP INDEX IF EXISTS rollup_user_hours_user_idx;
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, ROLLUPS_DDL),
    # `etl events --user`: a user's events newest first, one index range scan
    (5, "CREATE INDEX IF NOT EXISTS events_user_idx ON events (user_id, occurred_at)"),
    # `etl anomalies`: each run and what it found
    (6, FINDINGS_DDL),
    # push destinations: the outbox, ingestions, rejects; delivery_log per request
    (7, PUSH_DDL),
    # `etl events --user` without an index keyed by user on events (its random inserts cost
    # the load ~1.5-2 s of PostgreSQL CPU per million events): the user's hours from the
    # rollup, then per hour a range of (occurred_at, user_id), whose inserts are appends
    (8, _V8),
    # the rate budget shared by the tasks on one API key (etl.sharedrate, etl.sink.budget)
    (9, BUDGET_DDL),
    # events posted to `etl serve`: counted in posted_totals
    (10, _V10),
    # `etl events --user`: an index keyed by user on events (issue 14's "milliseconds")
    (11, _V11),
    # the rollups of every INSERT into events kept by a statement trigger (etl.sink.rollups)
    (12, INSERT_TRIGGER_DDL),
    # device/browser rollup per day (not per hour), per-user totals (etl.sink.rollups)
    (13, V13_DDL),
)

STAGE_TABLE = "etl_stage"
# Per-connection staging table for COPY; emptied by every commit. Defined without reference
# to ``events`` so it can be created when a pool connection opens, before migration.
STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    id uuid, session_id uuid, user_id uuid, type text, name text, occurred_at timestamptz,
    properties jsonb, session jsonb, timestamp_raw text
) ON COMMIT DELETE ROWS
"""


async def migrate(conn: Conn) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the number of steps applied.

    ``conn`` is an asyncpg connection. Safe to run concurrently from several processes.
    """
    applied = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        if current > SCHEMA_VERSION:
            raise SinkError(
                f"database schema version {current} is newer than this etl "
                f"(supports {SCHEMA_VERSION}); upgrade etl"
            )
        for version, ddl in MIGRATIONS:
            if version <= current:
                continue
            await conn.execute(ddl)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            applied += 1
    return applied
