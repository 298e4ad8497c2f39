"""What a cron job relies on: --max-runtime, --metrics-file, export-ids and submit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.errors import ExitCode
from tests.test_cli_ingest import SECRET_KEY, env_for, ingest_args, run_etl, slow_sandbox
from tests.test_metrics import parse


async def test_max_runtime_stops_gracefully_and_the_next_run_finishes(
    sandbox: Any, db_url: str, tmp_path: Path
) -> None:
    """A run past its deadline saves progress and exits 3; the next run completes."""
    sb = await slow_sandbox(sandbox, 60_000, latency_per_page=2.0)
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    metrics = tmp_path / "etl.prom"
    code, output = await run_etl(
        *ingest_args(sb, db_url, "--max-runtime", "0.5", "--metrics-file", str(metrics)),
        env=env,
    )
    assert code == ExitCode.PARTIAL, output
    assert "--max-runtime" in output and "rerun to resume" in output
    assert parse(metrics.read_text())["etl_last_run_success"] == 0
    code, output = await run_etl(*ingest_args(sb, db_url, "--metrics-file", str(metrics)), env=env)
    assert code == 0, output
    text = metrics.read_text()
    samples = parse(text)
    assert samples["etl_last_run_success"] == 1 and samples["etl_events_loaded"] == 60_000
    assert SECRET_KEY not in text


async def test_export_ids_and_submit_report_the_verdict(
    sandbox: Any, db_url: str, tmp_path: Path
) -> None:
    """The exported file holds every id once; the API's verdict says all are correct."""
    sb = await slow_sandbox(sandbox, 5_000)
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    code, output = await run_etl(*ingest_args(sb, db_url), env=env)
    assert code == 0, output
    ids_file = tmp_path / "ids.txt"
    code, output = await run_etl("export-ids", str(ids_file), "--database-url", db_url, env=env)
    assert code == 0, output
    lines = ids_file.read_text().split()
    assert len(lines) == len(set(lines)) == 5_000
    assert set(lines) == set(sb.ids())
    code, output = await run_etl(
        "submit",
        str(ids_file),
        "--api-url",
        sb.base_url,
        "--github-repo",
        "https://github.com/example/etl",
        env=env,
    )
    assert code == 0, output
    assert '"correct": 5000' in output and '"missing": 0' in output
    assert SECRET_KEY not in output


async def test_an_unwritable_metrics_file_warns_but_never_fails_the_run(
    sandbox: Any, db_url: str
) -> None:
    """Monitoring trouble is reported once; the data still loads and the exit code is 0."""
    sb = await slow_sandbox(sandbox, 5_000)
    env = env_for(DATASYNC_API_KEY=SECRET_KEY)
    code, output = await run_etl(
        *ingest_args(sb, db_url, "--metrics-file", "/proc/no-such-dir/etl.prom"), env=env
    )
    assert code == 0, output
    assert output.count("cannot write --metrics-file") == 1
    assert "ingest complete" in output
