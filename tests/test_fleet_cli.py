"""A fleet of sources loaded by N `etl ingest --fleet` task processes: two real sandboxes
(different datasets; one serves two keys), one real PostgreSQL where each source gets its
own database. A task is SIGKILLed mid-run and started again with its index."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl.errors import ExitCode
from etl.fleet import with_database
from tests.fixtures_db import _admin, run_sync
from tests.ingest_harness import loaded_ids
from tests.test_cli_ingest import env_for, etl
from tests.test_tasks_cli import finish, first_progress

TASKS = 3
KEYS = {"ACME_KEY": "ds_acme_acme_acme_acme_acme_0000001", "INITECH_KEY": "ds_initech_00000002"}
KEYS["GLOBEX_KEY"] = "ds_globex_globex_globex_globex_003"


@pytest.fixture
def prefix(pg_server_url: str) -> Iterator[str]:
    """A prefix for this test's databases; every database made under it is dropped after."""
    name = f"fleet_t{secrets.token_hex(4)}"
    yield name
    for source in ("acme", "initech", "globex"):
        run_sync(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}_{source}" WITH (FORCE)'))


async def two_sandboxes(sandbox: Any) -> tuple[Any, Any]:
    from etl.sandbox import SystemClock

    common = {"clock": SystemClock(), "latency_per_page": 2.0, "capacity": 0}
    common |= {"rate_limit": 100_000, "feed_throttle": 100_000}
    one = await sandbox(
        events=12_000, seed=1, api_keys=(KEYS["ACME_KEY"], KEYS["INITECH_KEY"]), **common
    )
    two = await sandbox(events=7_000, seed=7, api_keys=(KEYS["GLOBEX_KEY"],), **common)
    return one, two


def fleet_file(tmp_path: Path, prefix: str, one: Any, two: Any) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"""\
parallel: 2
defaults: {{shards: 4, page_size: 1000, loaders: 1}}
sources:
  - {{name: acme, api_url: "{one.base_url}", api_key_env: ACME_KEY,
     database: {prefix}_acme}}
  - {{name: initech, api_url: "{one.base_url}", api_key_env: INITECH_KEY,
     database_url_env: INITECH_DB, options: {{shards: 2}}}}
  - {{name: globex, api_url: "{two.base_url}", api_key_env: GLOBEX_KEY,
     database: {prefix}_globex}}
"""
    )
    return path


def task_env(server: str, index: int, prefix: str = "") -> dict[str, str]:
    return env_for(
        DATABASE_URL=server,
        ETL_SHARD_COUNT=str(TASKS),
        JOB_COMPLETION_INDEX=str(index),
        INITECH_DB=with_database(server, f"{prefix}_initech"),  # its own URL, made beforehand
        **KEYS,
    )


def fleet_args(path: Path, tmp_path: Path, index: int) -> list[str]:
    data = tmp_path / f"task{index}"
    return [
        *("ingest", "--fleet", str(path), "--data-dir", str(data)),
        *("--log-format", "json", "--progress-interval", "0.1"),
    ]


async def test_a_fleet_over_three_tasks_loads_each_source_exactly_into_its_own_database(
    sandbox: Any, pg_server_url: str, prefix: str, tmp_path: Path
) -> None:
    """3 sources (two datasets, one shared by two keys; one on a database URL of its own)
    dealt to 3 tasks; task 1 killed with SIGKILL mid-run and restarted with its index: every
    task ends 0, each source's database holds exactly its own dataset's ids, no key printed."""
    one, two = await two_sandboxes(sandbox)
    path = fleet_file(tmp_path, prefix, one, two)
    await asyncio.to_thread(run_sync, _admin(pg_server_url, f'CREATE DATABASE "{prefix}_initech"'))
    procs = [
        await etl(*fleet_args(path, tmp_path, i), env=task_env(pg_server_url, i, prefix))
        for i in range(TASKS)
    ]
    await first_progress(procs[1])
    procs[1].send_signal(signal.SIGKILL)
    await procs[1].wait()
    assert procs[1].returncode == -signal.SIGKILL
    procs[1] = await etl(*fleet_args(path, tmp_path, 1), env=task_env(pg_server_url, 1, prefix))
    results = await asyncio.gather(*(finish(p) for p in procs))
    for code, output in results:
        assert code == 0, output
        assert not any(key in output for key in KEYS.values())
    expected = {"acme": set(one.ids()), "initech": set(one.ids()), "globex": set(two.ids())}
    assert not expected["acme"] & expected["globex"]
    for source, ids in expected.items():
        loaded = await loaded_ids(with_database(pg_server_url, f"{prefix}_{source}"))
        assert len(loaded) == len(ids), source
        assert set(loaded) == ids, source


async def test_a_bad_fleet_file_exits_2_naming_the_line_and_loads_nothing(
    sandbox: Any, pg_server_url: str, prefix: str, tmp_path: Path
) -> None:
    """A source with an unknown option: exit 2 with file:line, before any database is made;
    then a key variable left unset: exit 2 naming the variable, not a key."""
    one, two = await two_sandboxes(sandbox)
    path = fleet_file(tmp_path, prefix, one, two)
    path.write_text(path.read_text().replace("loaders: 1", "loaders: 1, colour: blue"))
    whole = task_env(pg_server_url, 0)  # no task numbers: the whole fleet, task 0 of 1
    del whole["ETL_SHARD_COUNT"], whole["JOB_COMPLETION_INDEX"]
    code, output = await finish(await etl(*fleet_args(path, tmp_path, 0), env=whole))
    assert code == ExitCode.CONFIG, output
    assert f"{path}:2: unknown option 'colour'" in output
    path = fleet_file(tmp_path, prefix, one, two)
    env = task_env(pg_server_url, 0)
    del env["GLOBEX_KEY"]
    code, output = await finish(await etl(*fleet_args(path, tmp_path, 0), env=env))
    assert code == ExitCode.CONFIG, output
    assert f"{path}:8: source 'globex': GLOBEX_KEY is not set" in output
    assert not any(key in output for key in KEYS.values())
    with pytest.raises(Exception, match="does not exist"):
        await loaded_ids(with_database(pg_server_url, f"{prefix}_acme"))


async def test_sigterm_stops_every_source_of_a_fleet_task_and_a_rerun_finishes(
    sandbox: Any, pg_server_url: str, prefix: str, tmp_path: Path
) -> None:
    """The whole fleet in one process, SIGTERM once it loads: every source stops (exit 75,
    retry me), and the rerun resumes each source to its exact id set."""
    one, two = await two_sandboxes(sandbox)
    path = fleet_file(tmp_path, prefix, one, two)
    await asyncio.to_thread(run_sync, _admin(pg_server_url, f'CREATE DATABASE "{prefix}_initech"'))
    env = task_env(pg_server_url, 0, prefix)
    del env["ETL_SHARD_COUNT"], env["JOB_COMPLETION_INDEX"]
    proc = await etl(*fleet_args(path, tmp_path, 0), env=env)
    await first_progress(proc)
    proc.send_signal(signal.SIGTERM)
    code, output = await finish(proc)
    assert code == ExitCode.TEMPFAIL, output
    assert "source(s) done; exit 75" in output
    code, output = await finish(await etl(*fleet_args(path, tmp_path, 0), env=env))
    assert code == 0, output
    expected = {"acme": set(one.ids()), "initech": set(one.ids()), "globex": set(two.ids())}
    for source, ids in expected.items():
        loaded = await loaded_ids(with_database(pg_server_url, f"{prefix}_{source}"))
        assert sorted(loaded) == sorted(ids), source
