"""The issue's scenario as a user meets it: `etl ingest` processes against a small dataset,
then a different one, into the same PostgreSQL; what every command then says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etl.errors import ExitCode
from tests.ingest_harness import query
from tests.test_cli_ingest import SECRET_KEY, env_for, ingest_args, run_etl, slow_sandbox
from tests.test_metrics import parse

SMALL, FULL = 2_000, 6_000


def summary_line(output: str) -> dict[str, Any]:
    """The run's one-line summary, as its JSON log line."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    found: dict[str, Any] = [d for d in lines if d.get("event") == "summary"][-1]
    return found


async def test_small_then_full_dataset_stops_then_full_refresh_loads_it(
    sandbox: Any, db_url: str
) -> None:
    """Without --full-refresh: a clear non-zero "different dataset" stop naming the ways out
    (never "up to date" and exit 0); with it: the full dataset, exit 0."""
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    small = await slow_sandbox(sandbox, SMALL, latency_per_page=0.0)
    code, output = await run_etl(*ingest_args(small, db_url), env=env)
    assert code == 0, output
    full = await slow_sandbox(sandbox, FULL, latency_per_page=0.0)
    code, output = await run_etl(*ingest_args(full, db_url), env=env)
    assert code == ExitCode.SOURCE_MISMATCH, output
    assert "different dataset" in output and "Traceback" not in output
    assert "etl ingest --full-refresh" in output and "etl reset" in output
    assert "up to date" not in output and "ingest complete" not in output
    code, output = await run_etl("status", "--json", "--database-url", db_url, env=env)
    run = json.loads(output)["run"]
    assert run["status"] == "failed" and "different dataset" in run["error"]
    code, output = await run_etl(*ingest_args(full, db_url, "--full-refresh"), env=env)
    assert code == 0, output
    final = summary_line(output)
    assert final["msg"].startswith("ingest complete")
    assert (final["status"], final["loaded"], final["expected"]) == ("succeeded", FULL, FULL)
    parts = ("inserted", "duplicates", "quarantined", "out_of_range")
    assert final["received"] == sum(final[k] for k in parts)
    rows = await query(db_url, "SELECT count(*) AS n FROM events")
    assert rows[0]["n"] == FULL
    assert SECRET_KEY not in output


async def test_an_incomplete_run_is_reported_as_such_everywhere(
    sandbox: Any, db_url: str, tmp_path: Path
) -> None:
    """A run that finishes every shard short of the stated total exits 11 and is
    "incomplete" in the summary, `etl status`, `etl runs`, `etl health` and the metrics."""
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    small = await slow_sandbox(sandbox, SMALL, latency_per_page=0.0)
    code, output = await run_etl(*ingest_args(small, db_url), env=env)
    assert code == 0, output
    await query(db_url, "DELETE FROM ingest_source")  # state from an etl that kept no identity
    full = await slow_sandbox(sandbox, FULL, latency_per_page=0.0)
    metrics = tmp_path / "etl.prom"
    code, output = await run_etl(
        *ingest_args(full, db_url, "--metrics-file", str(metrics)), env=env
    )
    assert code == ExitCode.INCOMPLETE, output
    assert "INCOMPLETE" in output and f"{FULL - SMALL:,} missing" in output
    assert "--full-refresh" in output
    prom = parse(metrics.read_text())
    assert prom["etl_last_run_success"] == 0
    assert prom['etl_last_run_status{status="incomplete"}'] == 1
    assert prom["etl_events_missing"] == FULL - SMALL
    code, output = await run_etl("status", "--json", "--database-url", db_url, env=env)
    doc = json.loads(output)
    assert doc["run"]["status"] == "incomplete"
    assert doc["events"]["loaded"] == SMALL and doc["events"]["expected"] == FULL
    code, output = await run_etl("status", "--database-url", db_url, env=env)
    assert "incomplete" in output and "missing" in output
    code, output = await run_etl("runs", "--json", "--database-url", db_url, env=env)
    assert json.loads(output)["runs"][0]["status"] == "incomplete"
    code, output = await run_etl("health", "--database-url", db_url, env=env)
    assert code != 0 and output.startswith("degraded") and "incomplete" in output
