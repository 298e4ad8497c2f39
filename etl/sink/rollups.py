"""Rollups of ``events``, kept exact in the transaction that writes the rows they count.

Tables (hours are UTC; a missing device type, browser or page is '')
    rollup_hourly       (hour, type) -> events                 series, anomalies, top types
    rollup_dims         (hour, type, device_type, browser) -> events
    rollup_user_hours   (hour, user_id) -> events, purchases   distinct users, top users
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

A re-read batch inserts nothing and so adds nothing; a rolled-back batch leaves no trace.
Every table is keyed by hour, so loaders on different time shards never wait on each other's
rows. ``TRUNCATE events`` empties the rollups (a statement trigger, no per-row cost).

Distinct users are exact for any set of whole hours: ``count(DISTINCT user_id)`` over the
``rollup_user_hours`` rows of those hours, never a sum of hourly counts.
"""

from __future__ import annotations

PURCHASE = "purchase"  # the type that ``--by purchases`` counts

# The grouping of one event in SQL (the insert trigger, purges, the backfill and ``verify``).
HOUR = "date_trunc('hour', occurred_at, 'UTC')"
DEVICE = "coalesce(session->>'deviceType', '')"
BROWSER = "coalesce(session->>'browser', '')"
PAGE = "coalesce(properties->>'page', '')"
RETURNED = "occurred_at, type, session, user_id, properties"  # what grouping needs

# (table, key columns, with a purchases column)
ROLLUPS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("rollup_hourly", ("hour", "type"), False),
    ("rollup_dims", ("hour", "type", "device_type", "browser"), False),
    ("rollup_user_hours", ("hour", "user_id"), True),
    ("rollup_page_hours", ("hour", "page"), True),
)
_SQL_TYPES = {
    "hour": "timestamptz",
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


def grouped(source: str) -> str:
    """One scan of ``source`` (a table or CTE with ``RETURNED``) into the finest groups."""
    return (
        f"SELECT {HOUR} AS hour, type, {DEVICE} AS device_type, {BROWSER} AS browser,"
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


def _sums(keys: tuple[str, ...], purchases: bool, sign: str = "") -> str:
    """``SELECT keys, sum(n)[, sum(p)] FROM g GROUP BY keys``."""
    cols = ", ".join(keys)
    where = " WHERE user_id IS NOT NULL" if "user_id" in keys else ""
    p = f", {sign}sum(p)::bigint AS p" if purchases else ""
    return f"SELECT {cols}, {sign}sum(n)::bigint AS n{p} FROM g{where} GROUP BY {cols}"


def add_from(source_cte: str, final: str) -> str:
    """A statement: ``src`` = ``source_cte``, grouped once into ``g``, added to every rollup;
    then ``final`` (a query that may read ``g``)."""
    ctes = [f"src AS ({source_cte})", f"g AS MATERIALIZED ({grouped('src')})"]
    ctes += [
        f"a{k} AS ({_upsert(t, keys, p, _sums(keys, p))})" for k, (t, keys, p) in enumerate(ROLLUPS)
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

# Migration step 12: every INSERT into events (a COPY, the staged upsert, `etl serve`'s
# posts) adds exactly the rows it inserted, aggregated in SQL from the statement's
# transition table: no per-event work in the client, one statement per batch in the server.
INSERT_TRIGGER_DDL = f"""
CREATE OR REPLACE FUNCTION etl_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE done int;
BEGIN
    {add_from("SELECT " + RETURNED + " FROM new_rows", "SELECT 1 INTO done")};
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS etl_rollup_insert ON events;
CREATE TRIGGER etl_rollup_insert AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION etl_rollup_insert();
"""

# Migration step: the tables, and the rollups of the events already loaded.
ROLLUPS_DDL = f"""{_TABLES}
{add_from("SELECT " + RETURNED + " FROM events", "SELECT 1")};
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
