"""``run_query``: one read on an open connection or a DSN, with the errors translated once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from etl.pg import DB_ERRORS, Conn, connection, db_error

P = ParamSpec("P")
T = TypeVar("T")


async def run_query(
    target: Conn | str,
    what: str,
    query: Callable[Concatenate[Conn, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``query(conn, ...)`` on ``target``: a DSN (connected for this query, then closed) or an
    open connection (left open). Database errors become ``SinkError("<what> … failed: …")``."""
    if isinstance(target, str):
        async with connection(target, what) as conn:
            return await query(conn, *args, **kwargs)
    try:
        return await query(target, *args, **kwargs)
    except DB_ERRORS as exc:
        raise db_error(what, exc, "") from exc
