"""PostgreSQL fixtures: a real server for the session, a fresh empty database per test.

``pg_server_url`` is ``ETL_TEST_DATABASE_URL`` when set (any server the tests may create
databases on, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``), otherwise an embedded
pgserver in a session temp dir, so the suite passes on a machine with no database service.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from etl.sink import EmbeddedPostgres, PostgresSink
from etl.source.datasync import EVENTS

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a worker thread (safe from sync fixtures
    and from inside a running loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server whose role may CREATE DATABASE."""
    env = os.environ.get("ETL_TEST_DATABASE_URL")
    if env:
        yield env
        return
    data_dir: Path = tmp_path_factory.mktemp("pg") / "data"
    with EmbeddedPostgres(data_dir, database="postgres") as dsn:
        yield dsn


@pytest.fixture
def db_url(pg_server_url: str) -> Iterator[str]:
    """DSN of a fresh, empty database, dropped after the test."""
    name = f"etl_test_{secrets.token_hex(6)}"
    run_sync(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(pg_server_url, name)
    finally:
        run_sync(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def sink(db_url: str) -> AsyncIterator[PostgresSink]:
    """An open ``PostgresSink`` on a fresh, migrated database."""
    async with PostgresSink(db_url, stream=EVENTS) as s:
        yield s
