"""The read side's one connection-and-error helper: what is a database failure and what is not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from etl.errors import ConfigError, ExitCode, SinkError
from etl.pg import Conn
from etl.read.db import run_query
from etl.read.status import read_status


async def test_a_bug_in_a_query_function_is_not_a_database_failure(db_url: str) -> None:
    """A ValueError raised by our own code while a connection is open passes through as itself
    (exit 1, a bug to report), not as a SinkError (exit 6, 'the database is failing')."""

    async def buggy(conn: Conn) -> int:
        await conn.fetchval("SELECT 1")
        raise ValueError("a bug of ours")

    with pytest.raises(ValueError, match="a bug of ours"):
        await run_query(db_url, "reading something", buggy)


async def test_a_failing_query_is_a_database_failure_with_its_cause(db_url: str) -> None:
    """An SQL error becomes SinkError (exit 6) naming what was being done; the asyncpg error
    stays attached as its cause for a debugger."""

    async def bad_sql(conn: Conn) -> int:
        value: int = await conn.fetchval("SELECT no_such_column FROM pg_class")
        return value

    with pytest.raises(SinkError, match="reading something") as info:
        await run_query(db_url, "reading something", bad_sql)
    assert info.value.exit_code == ExitCode.DATABASE
    assert info.value.__cause__ is not None


async def test_a_database_url_asyncpg_cannot_parse_is_a_configuration_error() -> None:
    """A port that is not a number is the user's input, not a database outage: exit 2, with
    the password masked."""
    with pytest.raises(ConfigError) as info:
        await read_status("postgresql://etl:s3cr3t-pw@127.0.0.1:notaport/etl")
    assert "s3cr3t-pw" not in str(info.value)


def test_display_and_the_read_values_import_no_database_driver() -> None:
    """Rendering (etl.display) and the values it renders (etl.read.views) never pull asyncpg,
    so the CLI's drawing and a future HTTP view stay light."""
    code = "import sys, etl.display, etl.read.views; print('asyncpg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_read_values_load_without_the_decoder() -> None:
    """Every command imports etl.read.views (its "no ingest yet" sentence) at start-up; it
    must not pull msgspec or asyncpg, so `etl --help` and `etl status` stay fast."""
    code = "import sys, etl.read.views; print(sorted({'asyncpg', 'msgspec'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
