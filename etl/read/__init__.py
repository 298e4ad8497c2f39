"""The read side: every query that reads the tables, and nothing that writes them.

Layout (one module per question; each small)::

    db       run_query(): a query on an open connection or a DSN; errors -> SinkError
    views    plain values the queries return (RunRow, ShardRow, StatusSnapshot) and their
             documented JSON forms; no asyncpg, so display/ and cli/ import it freely
    status   read_status(): the progress snapshot of `etl status` / `etl health`
    runs     read_runs(): the run history of `etl runs`
    export   export_ids(): every loaded id to a file (`etl export-ids`)

To add a query module (e.g. ``events``, ``series``):

1. Create ``etl/read/<name>.py`` with the SQL as module constants and one
   ``async def _read_<name>(conn: Conn, ...) -> <value>`` that only runs queries on ``conn``
   (``etl.pg.Conn``), plus the public wrapper::

       async def read_<name>(target: Conn | str, ...) -> <value>:
           return await run_query(target, "reading <name>", _read_<name>, ...)

   ``run_query`` opens (and closes) a connection when given a DSN and turns every database
   error into ``SinkError`` (exit 6) with the password scrubbed; a ``ValueError`` or
   ``TypeError`` is our bug and passes through (exit 1). Never call ``asyncpg.connect`` or
   catch asyncpg's exceptions yourself: ``etl.pg`` is the one place that does.
2. Return plain frozen dataclasses (put them in ``views`` if display/ or another module needs
   them without asyncpg), never ``asyncpg.Record``.
3. Keep formatting out: rich tables belong in ``etl.display``, JSON forms next to the value.
4. Test it against the real PostgreSQL (``tests/fixtures_db.py``), one docstring per test.
"""
