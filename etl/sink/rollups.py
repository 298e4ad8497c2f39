"""Rollups of ``events``, kept exact in the transaction that writes the rows they count.

Tables (hours are UTC; a missing device type, browser or page is '')
    rollup_hourly       (hour, type) -> events                 series, anomalies, top types
    rollup_dims         (hour, type, device_type, browser) -> events
    rollup_user_hours   (hour, user_id) -> events, purchases   distinct users, top users
    rollup_page_hours   (hour, page) -> events, purchases      top pages
    purges              what ``etl purge`` deleted; rows with ``block_reload`` are not
                        loaded again (``PostgresSink`` drops them from later batches)

Exactly the rows that were new are counted, by the loader itself in the batch's transaction:

direct COPY   every row of the batch is new (else the COPY fails and the batch is redone
              staged), so ``aggregate`` sums the batch in Python and ``APPLY`` upserts the
              few hundred sums (one statement of unnests).
staged        ``staged_insert`` wraps the ``INSERT ... ON CONFLICT DO NOTHING`` in a CTE: its
              ``RETURNING`` yields only the rows the conflict did not drop, grouped in SQL.
purge         ``delete_returning`` wraps the ``DELETE`` the same way and subtracts; rows that
              reach 0 are removed, so the rollups always equal a GROUP BY over ``events``
              (``etl.read.rollups.verify`` checks exactly that).

A re-read batch inserts nothing and so adds nothing; a rolled-back batch leaves no trace.
Every table is keyed by hour, so loaders on different time shards never wait on each other's
rows. ``TRUNCATE events`` empties the rollups (a statement trigger, no per-row cost).

Distinct users are exact for any set of whole hours: ``count(DISTINCT user_id)`` over the
``rollup_user_hours`` rows of those hours, never a sum of hourly counts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from etl.models import Record

PURCHASE = "purchase"  # the type that ``--by purchases`` counts

# The grouping of one event in SQL (staged inserts, purges, the backfill and ``verify``);
# ``aggregate`` is the same in Python.
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


def staged_insert(insert_sql: str) -> str:
    """``insert_sql`` (an ``INSERT ... ON CONFLICT DO NOTHING`` without RETURNING) with the
    rows it really inserted added to the rollups; the statement returns their count."""
    return add_from(f"{insert_sql} RETURNING {RETURNED}", "SELECT coalesce(sum(n), 0) FROM g")


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

# Migration step: the tables, and the rollups of the events already loaded.
ROLLUPS_DDL = f"""{_TABLES}
{add_from("SELECT " + RETURNED + " FROM events", "SELECT 1")};
"""


# -- the direct path: sums of a batch in Python --------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    """``APPLY``'s arguments: per rollup (in ``ROLLUPS`` order) one array per column, the
    hour as epoch hours. Typed arrays travel in binary and ``unnest`` in PostgreSQL without
    parsing (a JSON document per table cost the server ~3x more)."""

    columns: tuple[list[Any], ...]

    def args(self) -> tuple[list[Any], ...]:
        return self.columns


class _Lookup(dict[Any, Any]):
    """A memo of ``fn`` whose hits cost one C-level dict lookup (``__getitem__`` in a
    ``map``); bounded: emptied when it grows past ``limit`` entries."""

    def __init__(self, fn: Callable[[Any], Any], limit: int = 50_000) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, key: Any) -> Any:
        value = self.fn(key)
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def _loads(text: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _text(value: Any) -> str:
    """As PostgreSQL's ``->>`` gives it ('' for null or missing)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(", ", ": "))


def _device_browser(session: str | None) -> tuple[str, str]:
    doc = _loads(session)
    return _text(doc.get("deviceType")), _text(doc.get("browser"))


def _page(properties: str) -> str:
    return _text(_loads(properties).get("page")) if '"page"' in properties else ""


# session JSON text -> (device type, browser); properties JSON text -> page. A session's
# text repeats for its ~50 events, and properties often repeat, so these mostly hit.
_DEVICE_BROWSER = _Lookup(_device_browser)
_PAGE = _Lookup(_page)
_AT = itemgetter(5)
_TYPE = itemgetter(3)
_USER = itemgetter(2)
_PROPS = itemgetter(6)
_SESSION = itemgetter(7)
_HOUR = attrgetter("hour")
_TZ = attrgetter("tzinfo")
_ORDINAL = methodcaller("toordinal")
_TO_UTC = methodcaller("astimezone", dt.UTC)
_ORDINAL_1970 = dt.date(1970, 1, 1).toordinal()


def _hour_keys(ats: list[dt.datetime]) -> tuple[list[Any], Callable[[Any], int]]:
    """One key per event naming its UTC hour, and the key -> epoch hours conversion.

    A batch covering at most 24 distinct hours (all of them in practice: a batch is a few
    pages of one shard) is keyed by the hour of the day, one C-level attribute read per
    event; a wider one by (day ordinal, hour)."""
    if set(map(_TZ, ats)) != {dt.UTC}:
        ats = list(map(_TO_UTC, ats))
    first = _epoch_hour(min(ats))
    if _epoch_hour(max(ats)) - first < 24:
        by_hod = {(first + k) % 24: first + k for k in range(24)}
        return list(map(_HOUR, ats)), by_hod.__getitem__
    keys = list(zip(map(_ORDINAL, ats), map(_HOUR, ats), strict=True))
    return keys, _epoch_hour_of


def _epoch_hour(at: dt.datetime) -> int:
    return _epoch_hour_of((at.toordinal(), at.hour))


def _epoch_hour_of(key: tuple[int, int]) -> int:
    return (key[0] - _ORDINAL_1970) * 24 + key[1]


def aggregate(records: Sequence[Record]) -> Delta:
    """The rollup sums of ``records`` (all of them new rows), as ``APPLY``'s arguments.

    Per event only C-level work: two ``Counter``s over ``zip``/``map`` (hour, type, device
    and browser; hour, user, page, purchase) and memo lookups. Python loops run over the
    groups (~2,000 per batch of 10,000 sandbox events)."""
    if not records:
        return Delta(tuple([] for _ in range(_N_COLUMNS)))
    keys, epoch = _hour_keys(list(map(_AT, records)))
    types = list(map(_TYPE, records))
    sessions = map(_DEVICE_BROWSER.__getitem__, map(_SESSION, records))
    pages = map(_PAGE.__getitem__, map(_PROPS, records))
    bought = map(PURCHASE.__eq__, types)
    by_dims = Counter(zip(keys, types, sessions, strict=True))
    by_user_page = Counter(zip(keys, map(_USER, records), pages, bought, strict=True))
    hours = {k: epoch(k) for k in set(keys)}
    hourly: dict[tuple[int, str], int] = {}
    dims: list[tuple[int, str, str, str, int]] = []
    add = dims.append
    for (k, t, (d, b)), n in by_dims.items():
        h = hours[k]
        hourly[h, t] = hourly.get((h, t), 0) + n
        add((h, t, d, b, n))
    users: dict[tuple[int, str], list[int]] = {}
    pages_: dict[tuple[int, str], list[int]] = {}
    for (k, u, page, purchase), n in by_user_page.items():
        h = hours[k]
        p = n if purchase else 0
        if u is not None:
            _add(users, (h, u), n, p)
        _add(pages_, (h, page), n, p)
    return Delta(
        (
            [h for h, _ in hourly],
            [t for _, t in hourly],
            list(hourly.values()),
            *map(list, zip(*dims, strict=True)),
            *_columns(users),
            *_columns(pages_),
        )
    )


def _add(acc: dict[tuple[int, str], list[int]], key: tuple[int, str], n: int, p: int) -> None:
    sums = acc.get(key)
    if sums is None:
        acc[key] = [n, p]
    else:
        sums[0] += n
        sums[1] += p


def _columns(acc: dict[tuple[int, str], list[int]]) -> tuple[list[Any], ...]:
    """{(hour, key): [events, purchases]} -> columns hour, key, events, purchases."""
    return (
        [h for h, _ in acc],
        [k for _, k in acc],
        [v[0] for v in acc.values()],
        [v[1] for v in acc.values()],
    )


def _apply_sql() -> str:
    ctes: list[str] = []
    arg = 0
    for k, (table, keys, purchases) in enumerate(ROLLUPS):
        names = [*keys, "n", "p"] if purchases else [*keys, "n"]
        arrays = []
        for name in names:
            arg += 1
            sql_type = "int4" if name == "hour" else _SQL_TYPES.get(name, "int8")
            arrays.append(f"${arg}::{sql_type}[]")
        cols = ", ".join(
            "to_timestamp(hour::int8 * 3600) AS hour" if name == "hour" else name for name in names
        )
        rows = f"SELECT {cols} FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})"
        ctes.append(f"a{k} AS ({_upsert(table, keys, purchases, rows)})")
    return "WITH " + ",\n  ".join(ctes) + "\nSELECT 1"


_N_COLUMNS = sum(len(keys) + (2 if purchases else 1) for _, keys, purchases in ROLLUPS)
APPLY = _apply_sql()


async def apply(conn: Any, delta: Delta) -> None:
    """Add ``delta`` to the rollups (on the batch's connection, inside its transaction)."""
    await conn.execute(APPLY, *delta.args())


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
