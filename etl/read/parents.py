"""A child stream's parent rows, read from the parent stream's table (``etl.rest.parents``).

``TableParents.after``: the rows whose cursor is at least the child's mark, after the
position the child reached, in (cursor, key) order: keyset pagination, so rows the parent
stream changes meanwhile move to a later position (and are read there) instead of shifting
the rows still to come. Rows with no cursor value are never a parent; a parent table that
does not exist yet (the parent never synced here) has no rows.
"""

from __future__ import annotations

from etl.pg import Conn
from etl.read.db import run_query
from etl.rest.parents import ParentRow
from etl.rest.records import cursor_text
from etl.rest.spec import StreamSpec
from etl.sink.streams import PG_TYPES


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TableParents:
    def __init__(self, dsn: str, parent: StreamSpec, fields: tuple[str, ...]) -> None:
        assert parent.incremental is not None  # checked when the spec was loaded
        self._dsn = dsn
        self._table = _q(parent.table)
        self._what = f"reading the rows of {parent.name} (the parent stream)"
        key = (parent.incremental.cursor_field, *parent.primary_key)
        self._key = key
        self._fields = fields
        self._types = [PG_TYPES[parent.column(k).type] for k in key]
        cols = ", ".join(_q(c) for c in dict.fromkeys((*key, *fields)))
        order = ", ".join(_q(k) for k in key)
        self._select = f"SELECT {cols} FROM {_q(parent.table)} WHERE {_q(key[0])} IS NOT NULL"
        self._order = f" ORDER BY {order} LIMIT "

    async def after(
        self, position: tuple[str, ...] | None, since: str | None, limit: int
    ) -> list[ParentRow]:
        sql, args = self._select, list[str]()
        if since is not None:
            args.append(since)
            sql += f" AND {_q(self._key[0])} >= $1::text::{self._types[0]}"
        if position is not None and len(position) == len(self._key):
            n = len(args)
            mine = ", ".join(f"${n + i + 1}::text::{t}" for i, t in enumerate(self._types))
            sql += f" AND ({', '.join(_q(k) for k in self._key)}) > ({mine})"
            args.extend(position)
        sql += self._order + str(int(limit))

        async def query(conn: Conn) -> list[ParentRow]:
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self._table):
                return []  # the parent has never been synced here: no parent rows yet
            rows = await conn.fetch(sql, *args)
            return [
                ParentRow(
                    tuple(cursor_text(r[k]) for k in self._key),
                    {f: cursor_text(r[f]) for f in self._fields},
                )
                for r in rows
            ]

        return await run_query(self._dsn, self._what, query)
