"""Rollups of ``events``, kept exact in the transaction that writes the rows they count.

Tables (hours and days are UTC; a missing device type, browser or page is '')
    rollup_hourly       (hour, type) -> events                 series, anomalies, top types
    rollup_day_dims     (day, type, device_type, browser) -> events   (schema 13; per hour
                        in rollup_dims before: ~12 rows per event type and hour, read by no
                        command, ~half of the rows every batch upserted)
    rollup_user_hours   (hour, user_id) -> events, purchases   distinct users, top users in
                                                               a range of hours
    rollup_users        (user_id) -> events, purchases        top users of all the data
                                                               (schema 13)
    rollup_page_hours   (hour, page) -> events, purchases      top pages
    purges              what ``etl purge`` deleted; rows with ``block_reload`` are not
                        loaded again (``PostgresSink`` drops them from later batches)

Exactly the rows that were new are counted, in the statement that writes them:

insert        a statement trigger (``etl_rollup_insert``, schema 12) groups the statement's
              transition table (the rows it really inserted: a direct COPY's, the staged
              ``INSERT ... ON CONFLICT DO NOTHING``'s survivors, `etl serve`'s posts) and
              upserts the sums. No per-event work in the client; the database does it
              instead (unthrottled 1M, same indexes: PostgreSQL CPU +3.7 s, where sums made
              in Python cost the client +2.0 s and PostgreSQL +1.5 s: README).
purge         ``delete_returning`` wraps the ``DELETE`` and subtracts; rows that reach 0 are
              removed, so the rollups always equal a GROUP BY over ``events``
              (``etl.read.rollups.verify`` checks exactly that).
repair        ``replace_rows`` moves an updated row between groups.

A re-read batch inserts nothing and so adds nothing (the trigger returns at once on an
empty transition table); a rolled-back batch leaves no trace. The hourly tables are keyed by
hour, so loaders on different time shards do not wait on each other's rows there; a day's
dimension rows and a user's total are shared by every batch of that day or user (upserts in
key order: waits, never deadlocks; fillfactor 50 keeps their updates HOT).
``TRUNCATE events`` empties the rollups (a statement trigger, no per-row cost).

Distinct users are exact for any set of whole hours: ``count(DISTINCT user_id)`` over the
``rollup_user_hours`` rows of those hours, never a sum of hourly counts.
"""

from __future__ import annotations

PURCHASE = "purchase"  # the type that ``--by purchases`` counts

# The grouping of one event in SQL (the insert trigger, purges, the backfill and ``verify``).
# date_bin: plain arithmetic on the UTC microseconds, the same hours and days as
# date_trunc(..., 'UTC') at a third of its cost (no time zone rules per row); schema 4-12
# were built with date_trunc (``HOUR_V4``: released steps are never edited)
EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
HOUR = f"date_bin('1 hour', occurred_at, {EPOCH})"
HOUR_V4 = "date_trunc('hour', occurred_at, 'UTC')"
DEVICE = "coalesce(session->>'deviceType', '')"
BROWSER = "coalesce(session->>'browser', '')"
PAGE = "coalesce(properties->>'page', '')"
RETURNED = "occurred_at, type, session, user_id, properties"  # what grouping needs

# (table, key columns, with a purchases column)
ROLLUPS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("rollup_hourly", ("hour", "type"), False),
    ("rollup_day_dims", ("day", "type", "device_type", "browser"), False),
    ("rollup_user_hours", ("hour", "user_id"), True),
    ("rollup_users", ("user_id",), True),
    ("rollup_page_hours", ("hour", "page"), True),
)
# The rollups of schema 4-12: migrations 4 and 12 are built from these (never edit a
# released step).
ROLLUPS_V4: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("rollup_hourly", ("hour", "type"), False),
    ("rollup_dims", ("hour", "type", "device_type", "browser"), False),
    ("rollup_user_hours", ("hour", "user_id"), True),
    ("rollup_page_hours", ("hour", "page"), True),
)
Rollups = tuple[tuple[str, tuple[str, ...], bool], ...]
# a key column that is not one of ``grouped``'s: its expression over them
KEY_EXPR = {"day": f"date_bin('1 day', hour, {EPOCH})"}
_SQL_TYPES = {
    "hour": "timestamptz",
    "day": "timestamptz",
    "type": "text",
    "device_type": "text",
    "browser": "text",
    "user_id": "uuid",
    "page": "text",
}

_TABLES = """
CREATE TABLE IF NOT EXISTS rollup_hourly (
    hour timestamptz NOT NULL, type text NOT NULL, events bigint NOT NULL,
    PRIMARY KEY (hour, type)
);
CREATE TABLE IF NOT EXISTS rollup_dims (
    hour timestamptz NOT NULL, type text NOT NULL, device_type text NOT NULL,
    browser text NOT NULL, events bigint NOT NULL,
    PRIMARY KEY (hour, type, device_type, browser)
);
CREATE TABLE IF NOT EXISTS rollup_user_hours (
    hour timestamptz NOT NULL, user_id uuid NOT NULL, events bigint NOT NULL,
    purchases bigint NOT NULL, PRIMARY KEY (hour, user_id)
);
CREATE TABLE IF NOT EXISTS rollup_page_hours (
    hour timestamptz NOT NULL, page text NOT NULL, events bigint NOT NULL,
    purchases bigint NOT NULL, PRIMARY KEY (hour, page)
);
CREATE TABLE IF NOT EXISTS purges (
    purge_id     bigserial   PRIMARY KEY,
    purged_at    timestamptz NOT NULL DEFAULT now(),
    user_id      uuid        NULL,
    type         text        NULL,
    since        timestamptz NULL,  -- inclusive
    until        timestamptz NULL,  -- exclusive
    deleted      bigint      NOT NULL,
    block_reload boolean     NOT NULL
);
CREATE OR REPLACE FUNCTION etl_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE rollup_hourly, rollup_dims, rollup_user_hours, rollup_page_hours;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS etl_rollup_truncate ON events;
CREATE TRIGGER etl_rollup_truncate AFTER TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION etl_rollup_truncate();
"""


def truncate_function(rollups: Rollups) -> str:
    """``etl_rollup_truncate()``: empties ``rollups`` (``TRUNCATE events`` fires it)."""
    tables = ", ".join(t for t, _, _ in rollups)
    return f"""CREATE OR REPLACE FUNCTION etl_rollup_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE {tables};
    RETURN NULL;
END;
$$;"""


def grouped(source: str, hour: str = HOUR) -> str:
    """One scan of ``source`` (a table or CTE with ``RETURNED``) into the finest groups."""
    return (
        f"SELECT {hour} AS hour, type, {DEVICE} AS device_type, {BROWSER} AS browser,"
        f" user_id, {PAGE} AS page, count(*) AS n,"
        f" count(*) FILTER (WHERE type = '{PURCHASE}') AS p FROM {source}"
        " GROUP BY 1, 2, 3, 4, 5, 6"
    )


def _upsert(table: str, keys: tuple[str, ...], purchases: bool, rows: str) -> str:
    """``INSERT ... ON CONFLICT`` adding ``rows`` (keys, events[, purchases]) to ``table``,
    in key order so concurrent loaders lock rows in the same order."""
    cols = ", ".join(keys)
    measures = "events, purchases" if purchases else "events"
    update = "events = r.events + EXCLUDED.events"
    if purchases:
        update += ", purchases = r.purchases + EXCLUDED.purchases"
    return (
        f"INSERT INTO {table} AS r ({cols}, {measures}) {rows} ORDER BY {cols}"
        f" ON CONFLICT ({cols}) DO UPDATE SET {update}"
    )


def key_select(keys: tuple[str, ...]) -> str:
    """The key columns over ``grouped``'s columns (``day`` from ``hour``)."""
    return ", ".join(f"{KEY_EXPR[k]} AS {k}" if k in KEY_EXPR else k for k in keys)


def key_group(keys: tuple[str, ...]) -> str:
    """``GROUP BY`` of ``key_select(keys)``: a computed key by its position."""
    return ", ".join(str(i) if k in KEY_EXPR else k for i, k in enumerate(keys, start=1))


def _sums(keys: tuple[str, ...], purchases: bool, sign: str = "") -> str:
    """``SELECT keys, sum(n)[, sum(p)] FROM g GROUP BY keys``."""
    where = " WHERE user_id IS NOT NULL" if "user_id" in keys else ""
    p = f", {sign}sum(p)::bigint AS p" if purchases else ""
    return (
        f"SELECT {key_select(keys)}, {sign}sum(n)::bigint AS n{p} FROM g{where}"
        f" GROUP BY {key_group(keys)}"
    )


def add_from(source_cte: str, final: str, rollups: Rollups = ROLLUPS, hour: str = HOUR) -> str:
    """A statement: ``src`` = ``source_cte``, grouped once into ``g``, added to every rollup;
    then ``final`` (a query that may read ``g``)."""
    ctes = [f"src AS ({source_cte})", f"g AS MATERIALIZED ({grouped('src', hour)})"]
    ctes += [
        f"a{k} AS ({_upsert(t, keys, p, _sums(keys, p))})" for k, (t, keys, p) in enumerate(rollups)
    ]
    return "WITH " + ",\n  ".join(ctes) + "\n" + final


def delete_returning(where: str) -> str:
    """``DELETE FROM events WHERE <where>`` subtracting what it deleted; returns the count.
    Follow with ``DROP_EMPTY`` in the same transaction."""
    ctes = [
        f"src AS (DELETE FROM events WHERE {where} RETURNING {RETURNED})",
        f"g AS MATERIALIZED ({grouped('src')})",
    ]
    for k, (table, keys, purchases) in enumerate(ROLLUPS):
        on = " AND ".join(f"r.{c} = d.{c}" for c in keys)
        update = "events = r.events - d.n" + (
            ", purchases = r.purchases - d.p" if purchases else ""
        )
        sums = _sums(keys, purchases)
        ctes.append(f"s{k} AS (UPDATE {table} AS r SET {update} FROM ({sums}) AS d WHERE {on})")
    return "WITH " + ",\n  ".join(ctes) + "\nSELECT coalesce(sum(n), 0) FROM g"


DROP_EMPTY = tuple(f"DELETE FROM {t} WHERE events <= 0" for t, _, _ in ROLLUPS)


def insert_trigger(rollups: Rollups, skip_empty: bool, hour: str = HOUR) -> str:
    """``etl_rollup_insert()`` adding each INSERT's transition table to ``rollups``, and
    the trigger; ``skip_empty``: return at once when the statement inserted nothing."""
    body = add_from("SELECT " + RETURNED + " FROM new_rows", "SELECT 1 INTO done", rollups, hour)
    skip = "IF NOT EXISTS (SELECT FROM new_rows) THEN RETURN NULL; END IF;\n    " * skip_empty
    return f"""
CREATE OR REPLACE FUNCTION etl_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE done int;
BEGIN
    {skip}{body};
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS etl_rollup_insert ON events;
CREATE TRIGGER etl_rollup_insert AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION etl_rollup_insert();
"""


# Migration step 12: every INSERT into events (a COPY, the staged upsert, `etl serve`'s
# posts) adds exactly the rows it inserted, aggregated in SQL from the statement's
# transition table: no per-event work in the client, one statement per batch in the server.
INSERT_TRIGGER_DDL = insert_trigger(ROLLUPS_V4, skip_empty=False, hour=HOUR_V4)

# Migration step: the tables, and the rollups of the events already loaded.
ROLLUPS_DDL = f"""{_TABLES}
{add_from("SELECT " + RETURNED + " FROM events", "SELECT 1", ROLLUPS_V4, HOUR_V4)};
"""

# Migration step 13: the device/browser dimensions per day instead of per hour (the hourly
# table was read by no command and took ~half of the rollup rows upserted per batch);
# per-user totals for the top users of all the data (a 3,000-row read instead of a
# 112k-row aggregate on 3M events). Both filled from the old rollups, not from events;
# SHARE on events holds loaders off meanwhile, so nothing is counted twice or missed.
# Small, hot tables: fillfactor 50, so their updates stay on the page (HOT, no index entry).
V13_DDL = f"""
LOCK TABLE events IN SHARE MODE;
CREATE TABLE IF NOT EXISTS rollup_day_dims (
    day timestamptz NOT NULL, type text NOT NULL, device_type text NOT NULL,
    browser text NOT NULL, events bigint NOT NULL,
    PRIMARY KEY (day, type, device_type, browser)
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS rollup_users (
    user_id uuid NOT NULL PRIMARY KEY, events bigint NOT NULL, purchases bigint NOT NULL
) WITH (fillfactor = 50);
DO $$ BEGIN
IF to_regclass('rollup_dims') IS NOT NULL THEN
    INSERT INTO rollup_day_dims (day, type, device_type, browser, events)
        SELECT {KEY_EXPR["day"]}, type, device_type, browser, sum(events)::bigint
        FROM rollup_dims GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;
    INSERT INTO rollup_users (user_id, events, purchases)
        SELECT user_id, sum(events)::bigint, sum(purchases)::bigint FROM rollup_user_hours
        GROUP BY 1 ORDER BY 1 ON CONFLICT DO NOTHING;
    DROP TABLE rollup_dims;
END IF;
END $$;
{truncate_function(ROLLUPS)}
{insert_trigger(ROLLUPS, skip_empty=True)}
"""


def replace_rows(old_select: str, update_sql: str) -> str:
    """``update_sql`` (an ``UPDATE events AS e ...`` without RETURNING) with the rollups moved
    from the rows as ``old_select`` sees them (same predicate, the statement's snapshot: before
    the update) to the rows as updated; returns the number of rows updated. Follow with
    ``DROP_EMPTY`` when it is not 0."""
    ctes = [
        f"old AS ({old_select})",
        f"new AS ({update_sql} RETURNING {', '.join('e.' + c for c in RETURNED.split(', '))})",
        f"g_old AS MATERIALIZED ({grouped('old')})",
        f"g_new AS MATERIALIZED ({grouped('new')})",
        "g AS (SELECT hour, type, device_type, browser, user_id, page, sum(n) AS n, sum(p) AS p"
        " FROM (SELECT * FROM g_new UNION ALL SELECT hour, type, device_type, browser,"
        " user_id, page, -n, -p FROM g_old) AS d GROUP BY 1, 2, 3, 4, 5, 6)",
    ]
    ctes += [
        f"a{k} AS ({_upsert(t, keys, p, _sums(keys, p))})" for k, (t, keys, p) in enumerate(ROLLUPS)
    ]
    return "WITH " + ",\n  ".join(ctes) + "\nSELECT count(*) FROM new"
