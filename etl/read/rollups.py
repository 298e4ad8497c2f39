"""`etl rollups`: what the rollup tables hold, and ``--verify``: recompute them from ``events``.

The verification groups ``events`` exactly as the triggers do (``etl.sink.rollups.grouped``)
into a temporary table, then compares every rollup with a FULL JOIN: a key missing on
either side, or a different count, is a difference. It reads the whole table (seconds on
3M rows), in one REPEATABLE READ transaction so a load running meanwhile cannot make a
consistent state look inconsistent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from etl.pg import Conn
from etl.read.db import run_query
from etl.sink.rollups import ROLLUPS, grouped, key_group, key_select

MAX_REPORTED = 20  # differences listed per table (all are counted)


@dataclass(frozen=True, slots=True)
class RollupTable:
    table: str
    rows: int
    events: int


@dataclass(frozen=True, slots=True)
class RollupSummary:
    tables: tuple[RollupTable, ...]
    first_hour: dt.datetime | None
    last_hour: dt.datetime | None
    series: int  # (type) series held in rollup_hourly


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    key: dict[str, str]
    expected_events: int  # from events
    stored_events: int  # in the rollup
    expected_purchases: int | None = None
    stored_purchases: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    events: int  # rows of events read
    differences: int  # over all tables
    per_table: dict[str, int] = field(default_factory=dict)
    examples: tuple[Difference, ...] = ()

    @property
    def ok(self) -> bool:
        return self.differences == 0


def _summary_sql() -> str:
    """One statement (one round trip): per table rows and events, in ``ROLLUPS`` order; the
    first row (``rollup_hourly``) also its hours and series."""
    parts = []
    for i, (table, _keys, _p) in enumerate(ROLLUPS):
        extra = (
            "min(hour), max(hour), count(DISTINCT type)"
            if table == "rollup_hourly"
            else "NULL::timestamptz, NULL::timestamptz, NULL::bigint"
        )
        parts.append(
            f"SELECT {i} AS i, count(*) AS n, coalesce(sum(events), 0)::bigint AS e, {extra}"
            f" FROM {table}"
        )
    return "SELECT * FROM (" + " UNION ALL ".join(parts) + ") AS t (i, n, e, lo, hi, s) ORDER BY i"


async def _summary(conn: Conn) -> RollupSummary:
    rows = await conn.fetch(_summary_sql())
    tables = tuple(RollupTable(ROLLUPS[r["i"]][0], int(r["n"]), int(r["e"])) for r in rows)
    hourly = rows[0]  # rollup_hourly comes first in ROLLUPS
    return RollupSummary(tables, hourly["lo"], hourly["hi"], int(hourly["s"]))


async def read_summary(target: Conn | str) -> RollupSummary:
    return await run_query(target, "reading the rollups", _summary)


def _compare_sql(table: str, keys: tuple[str, ...], purchases: bool) -> str:
    cols = ", ".join(keys)
    where = " WHERE user_id IS NOT NULL" if "user_id" in keys else ""
    p_truth = ", sum(p)::bigint AS purchases" if purchases else ", NULL::bigint AS purchases"
    p_stored = "purchases" if purchases else "NULL::bigint AS purchases"
    return (
        f"SELECT {cols}, coalesce(t.events, 0) AS expected, coalesce(r.events, 0) AS stored,"
        f" t.purchases AS expected_p, r.purchases AS stored_p"
        f" FROM (SELECT {key_select(keys)}, sum(n)::bigint AS events{p_truth}"
        f" FROM etl_verify_g{where} GROUP BY {key_group(keys)}) AS t"
        f" FULL JOIN (SELECT {cols}, events, {p_stored} FROM {table}) AS r USING ({cols})"
        f" WHERE t.events IS DISTINCT FROM r.events OR t.purchases IS DISTINCT FROM r.purchases"
        f" ORDER BY {cols}"
    )


async def _verify(conn: Conn) -> VerifyReport:
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute(f"CREATE TEMP TABLE etl_verify_g ON COMMIT DROP AS {grouped('events')}")
        total = int(await conn.fetchval("SELECT coalesce(sum(n), 0)::bigint FROM etl_verify_g"))
        per_table: dict[str, int] = {}
        examples: list[Difference] = []
        for table, keys, purchases in ROLLUPS:
            rows = await conn.fetch(_compare_sql(table, keys, purchases))
            per_table[table] = len(rows)
            for r in rows[:MAX_REPORTED]:
                examples.append(
                    Difference(
                        table=table,
                        key={k: _text(r[k]) for k in keys},
                        expected_events=int(r["expected"]),
                        stored_events=int(r["stored"]),
                        expected_purchases=_int(r["expected_p"]) if purchases else None,
                        stored_purchases=_int(r["stored_p"]) if purchases else None,
                    )
                )
    return VerifyReport(total, sum(per_table.values()), per_table, tuple(examples))


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _int(value: object) -> int:
    return 0 if value is None else int(str(value))


async def verify(target: Conn | str) -> VerifyReport:
    """Recompute every rollup from ``events`` and report the differences."""
    return await run_query(target, "verifying the rollups", _verify)
