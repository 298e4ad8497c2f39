"""`etl status`, `etl runs` and `etl health` through the CLI: output, exit codes, no secrets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from etl.cli import app
from etl.errors import ExitCode
from etl.models import RunCounters, ShardState
from etl.sink import EmbeddedPostgres, PostgresSink
from etl.sink.dsn import redact_dsn
from etl.source.datasync import EVENTS
from tests.fixtures_db import run_sync
from tests.test_status import batch

DB_PASSWORD = "pw-s3cret-Zq9"
API_KEY = "ds_key_s3cret_Zq9"


def invoke(args: list[str], env: dict[str, str]) -> Result:
    """Run the CLI with exactly ``env`` for its options (nothing from the caller's environment)."""
    base = {"DATABASE_URL": "", "DATASYNC_API_URL": "", "DATASYNC_API_KEY": "", "NO_COLOR": "1"}
    return CliRunner().invoke(app, args, env={**base, **env})


async def populate(dsn: str, *, finish: str | None = None) -> int:
    """One run through the real sink: two shards, 8 events loaded of 20 expected."""
    async with PostgresSink(dsn, stream=EVENTS) as sink:
        await sink.add_shards([ShardState("a", None, None), ShardState("b", None, None)])
        run_id = await sink.start_run("events")
        await sink.write(batch("a", range(5)))
        await sink.write(batch("b", range(100, 103), done=True))
        counters = RunCounters(
            received=11, inserted=8, out_of_range=3, requests=4, retries=1, rate_limited=2
        )
        counters.extra.update(expected_total=20, loaded_before=0)
        await sink.heartbeat(counters)
        if finish:
            await sink.finish_run(finish, counters, "SourceError: upstream down")  # type: ignore[arg-type]
        return run_id


def test_status_json(db_url: str) -> None:
    """`etl status --json` prints the versioned document of the live run."""
    run_id = run_sync(populate(db_url))
    result = invoke(["status", "--json"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["initialized"] is True
    assert doc["events"]["loaded"] == 8 and doc["events"]["percent"] == 40.0
    assert doc["run"]["id"] == run_id and doc["run"]["status"] == "running"
    assert doc["shards"]["done"] == 1


def test_status_text(db_url: str) -> None:
    """`etl status` prints the figures a person reads."""
    run_id = run_sync(populate(db_url))
    result = invoke(["status"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"run {run_id} running" in text
    assert "loaded 8 / 20 40.0%" in text
    assert "requests 4 · 429s 2 · retries 1" in text
    assert "a running 5" in text and "b done 3" in text


def test_status_on_a_fresh_database(db_url: str) -> None:
    """No tables yet: a clear sentence naming the database, exit 0 (JSON: initialized
    false)."""
    result = invoke(["status"], {"DATABASE_URL": db_url})
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        f"no ingest has run against {redact_dsn(db_url)} yet",
    )
    result = invoke(["status", "--json"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0
    assert json.loads(result.stdout)["initialized"] is False


def test_status_with_an_empty_data_dir(tmp_path: Path) -> None:
    """No DATABASE_URL and no embedded database yet: says so, naming the data dir, and
    starts nothing."""
    result = invoke(["status"], {"ETL_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"no ingest has run against {tmp_path} (no embedded database there) yet"
    )
    assert list(tmp_path.iterdir()) == []


def test_status_attaches_to_a_running_embedded_server(tmp_path: Path) -> None:
    """While the embedded server is in use (as by a live ingest), status reads it and leaves
    it running."""
    with EmbeddedPostgres(tmp_path / "pg") as dsn:
        run_sync(populate(dsn))
        result = invoke(["status", "--json"], {"ETL_DATA_DIR": str(tmp_path)})
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["events"]["loaded"] == 8
        run_sync(populate(dsn))  # the server is still up for its first user


def test_runs_lists_history(db_url: str) -> None:
    """`etl runs` shows each run with its counters (received = inserted + dupes + quar. +
    out of range) and error; --limit and --json work."""
    first = run_sync(populate(db_url, finish="failed"))
    second = run_sync(populate(db_url))
    result = invoke(["runs"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    header = "run started (UTC) ended (UTC) took status received inserted dupes quar."
    assert lines[0] == header + " out of range requests retries 429s error"
    assert lines[1].startswith(str(second)) and " running 11 8 0 0 3 4 1 2" in lines[1]
    assert (
        lines[2].startswith(str(first))
        and "failed 11 8 0 0 3 4 1 2 SourceError: upstream down" in lines[2]
    )
    result = invoke(["runs", "--json", "--limit", "1"], {"DATABASE_URL": db_url})
    runs = json.loads(result.stdout)["runs"]
    assert [r["id"] for r in runs] == [second]
    assert runs[0]["rate_limited"] == 2 and runs[0]["duplicates"] == 0


def test_runs_on_a_fresh_database(db_url: str) -> None:
    """No runs yet: a clear sentence naming the database, exit 0."""
    result = invoke(["runs"], {"DATABASE_URL": db_url})
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        f"no ingest has run against {redact_dsn(db_url)} yet",
    )


def test_health_ok(db_url: str) -> None:
    """A live run with a fresh heartbeat and no API configured: ok, exit 0."""
    run_sync(populate(db_url))
    result = invoke(["health"], {"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "ok"
    assert "  api: ok · not configured (sandbox)" in lines


def test_health_failed_run_is_degraded(db_url: str) -> None:
    """The last run failed: degraded, naming it, exit 8; --json says the same."""
    run_id = run_sync(populate(db_url, finish="failed"))
    result = invoke(["health"], {"DATABASE_URL": db_url})
    assert result.exit_code == ExitCode.DEGRADED
    assert result.stdout.splitlines()[0] == (
        f"degraded: run {run_id} failed: SourceError: upstream down"
    )
    doc = json.loads(invoke(["health", "--json"], {"DATABASE_URL": db_url}).stdout)
    assert doc["status"] == "degraded" and len(doc["problems"]) == 1


def test_health_stalled_run(db_url: str) -> None:
    """A running run whose heartbeat is older than --stale-after is 'stalled'."""
    run_id = run_sync(populate(db_url))
    result = invoke(["health", "--stale-after", "0"], {"DATABASE_URL": db_url})
    assert result.exit_code == ExitCode.DEGRADED
    assert result.stdout.startswith(f"degraded: run {run_id} stalled")


async def test_health_api_key(db_url: str, sandbox) -> None:  # type: ignore[no-untyped-def]
    """The key is checked against the API index; a rejected key degrades health, unprinted."""
    sb = await sandbox(events=100)
    env = {"DATABASE_URL": db_url, "DATASYNC_API_URL": sb.base_url}
    good = await asyncio.to_thread(invoke, ["health"], {**env, "DATASYNC_API_KEY": sb.api_key})
    assert good.exit_code == 0, good.output
    bad = await asyncio.to_thread(invoke, ["health"], {**env, "DATASYNC_API_KEY": API_KEY})
    assert bad.exit_code == ExitCode.DEGRADED
    assert bad.stdout.splitlines()[0] == "degraded: api key rejected"
    assert API_KEY not in bad.output


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["runs"], ["health"]])
def test_secrets_never_printed(command: list[str]) -> None:
    """An unreachable database and API: clear errors, right exit codes, no password, no key."""
    env = {
        "DATABASE_URL": f"postgresql://etl:{DB_PASSWORD}@127.0.0.1:1/etl",
        "DATASYNC_API_URL": "http://127.0.0.1:1/api/v1",
        "DATASYNC_API_KEY": API_KEY,
    }
    result = invoke(command, env)
    expected = ExitCode.DEGRADED if command[0] == "health" else ExitCode.DATABASE
    assert result.exit_code == expected, result.output
    assert DB_PASSWORD not in result.output and API_KEY not in result.output
    assert "127.0.0.1:1" in result.output  # the message says where it failed
    if command[0] == "health":
        assert result.stdout.startswith("degraded: database unreachable")
        assert "api unreachable" in result.stdout


@pytest.mark.parametrize("command", ["status", "runs", "health"])
def test_help_lists_shared_options(command: str) -> None:
    """Every read command accepts the shared connection options, so one environment serves them
    all."""
    result = invoke([command, "--help"], {})
    assert result.exit_code == 0
    for option in ("--database-url", "--data-dir", "--api-url", "--api-key", "--json"):
        assert option in result.stdout
