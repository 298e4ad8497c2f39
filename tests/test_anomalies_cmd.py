"""`etl anomalies` end to end: rollups in, findings stored with their run, exit codes, and the
benchmark service (the sandbox's) as the thresholds source, healthy or not."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl import thresholds
from etl.cli import app
from etl.errors import ExitCode, ThresholdsError
from etl.read.anomalies import find_anomalies
from tests.fixtures_db import run_sync
from tests.fixtures_sandbox import SandboxFactory
from tests.read_data import T0, event, fetch, load

H = dt.timedelta(hours=1)


def history(days: int = 17, spike_at: int | None = None) -> list:  # type: ignore[type-arg]
    """Clicks and page views: 2 + (hour of day % 3) + (day % 2) clicks and 4 page views an
    hour; the hour ``spike_at`` (index from the start) gets 40 extra clicks."""
    out = []
    n = 0
    for h in range(days * 24):
        at = T0 + h * H
        clicks = 2 + (h % 24) % 3 + (h // 24) % 2 + (40 if h == spike_at else 0)
        for k in range(clicks):
            out.append(event(n, at=at + dt.timedelta(seconds=k), type="click"))
            n += 1
        for k in range(4):
            out.append(event(n, at=at + dt.timedelta(seconds=30 + k), type="page_view"))
            n += 1
    return out


async def test_findings_are_stored_with_their_run(db_url: str) -> None:
    """A spike in the detection window is found, and the run and its findings are stored."""
    spike = 16 * 24 + 5  # in the last two complete days (the last hour is left out)
    await load(db_url, [history(spike_at=spike)])
    report = await find_anomalies(db_url)
    assert [(a.series, a.bucket, a.direction) for a in report.anomalies] == [
        ("click", T0 + spike * H, "spike")
    ]
    assert report.window_end == T0 + (17 * 24 - 1) * H
    rows = await fetch(db_url, "SELECT run_id, kind, series, bucket FROM anomaly_findings")
    assert [tuple(r) for r in rows] == [(report.run_id, "anomaly", "click", T0 + spike * H)]
    quiet = await find_anomalies(db_url, until=T0 + 10 * 24 * H)
    assert not quiet.found and quiet.run_id == report.run_id + 1


def test_cli_exit_codes_and_rules_file(db_url: str, tmp_path: Path) -> None:
    """Exit 0 when nothing is found; 8 with a breached rule (--json lists it); 9 when the
    thresholds file is missing or is not rules."""
    run_sync(load(db_url, [history()]))
    env = {"DATABASE_URL": db_url}
    ok = CliRunner().invoke(app, ["anomalies"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "no anomalies, no threshold breaches" in ok.output
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            [
                {
                    "name": "ctr",
                    "metric": "ratio",
                    "numerator": "click",
                    "denominator": "page_view",
                    "min": 1.0,
                }
            ]
        )
    )
    out = CliRunner().invoke(app, ["anomalies", "--thresholds", str(rules), "--json"], env=env)
    assert out.exit_code == ExitCode.FINDINGS, out.output
    doc = json.loads(out.output)
    assert [b["rule"] for b in doc["breaches"]] == ["ctr", "ctr"]  # both detection days
    missing = CliRunner().invoke(app, ["anomalies", "--thresholds", str(tmp_path / "no")], env=env)
    assert missing.exit_code == ExitCode.THRESHOLDS
    assert "cannot read thresholds file" in missing.output
    rules.write_text("{not json")
    bad = CliRunner().invoke(app, ["anomalies", "--thresholds", str(rules)], env=env)
    assert bad.exit_code == ExitCode.THRESHOLDS and "garbage" in bad.output


def test_cli_service_down_exits_9(db_url: str) -> None:
    """A benchmark service that does not answer: exit 13 and a clear line, no alerts silently
    skipped, no traceback."""
    run_sync(load(db_url, [history(days=3)]))
    out = CliRunner().invoke(
        app,
        ["anomalies", "--thresholds-url", "http://127.0.0.1:1/benchmarks/thresholds"],
        env={"DATABASE_URL": db_url},
    )
    assert out.exit_code == ExitCode.THRESHOLDS, out.output
    assert "unreachable" in out.output and "Traceback" not in out.output


async def test_sandbox_benchmark_service(sandbox: SandboxFactory) -> None:
    """The sandbox serves the rules; with its fault knob down, garbage or bad rules, the
    client fails with ThresholdsError (exit 13) saying which."""
    sb = await sandbox()
    url = sb.root_url + "/benchmarks/thresholds"
    rules = await thresholds.from_url(url)
    assert {r.name for r in rules} >= {"click-through", "conversion", "error share"}
    for fault, word in (("down", "HTTP 503"), ("garbage", "not JSON"), ("bad_rules", "rules")):
        bad = await sandbox(thresholds_fault=fault)
        with pytest.raises(ThresholdsError, match=word):
            await thresholds.from_url(bad.root_url + "/benchmarks/thresholds")
