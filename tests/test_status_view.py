"""What a person reads in `etl status` and the live view: a steady ETA, the real load after
an up-to-date run, the database named, and no row or column left unexplained."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from etl.clock import FakeClock as RunClock
from etl.display import RichReporter, render_status
from etl.display.progress import SmoothedRate
from etl.models import Position, ShardState
from etl.read.status import read_status
from etl.read.views import ShardRow, StatusSnapshot, snapshot_to_json
from tests.ingest_harness import LinkedClock, ingest
from tests.test_cli_ops import invoke
from tests.test_display import T0, T0_MS, FakeClock, console, counters, output, snapshot, words


def _eta_seconds(text: str) -> float:
    eta = text.rsplit("ETA ", 1)[1].split(" ·")[0]
    minutes, _, seconds = eta.rpartition("m")
    hours, _, minutes = minutes.rpartition("h")
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds.rstrip("s") or 0)


def test_one_429_pause_and_the_burst_after_it_barely_move_the_eta() -> None:
    """Steady 1,000 ev/s towards 300,000: ETA about 4m40s. A 10 s stall (a 429 with
    Retry-After), then a 2 s burst at 6x as the pages held back commit, must not swing it
    (the 10 s "now" rate did: 4m23s to 30 s), yet a lasting change still shows."""
    clock = FakeClock()
    reporter = RichReporter(console(), get_time=clock)
    loaded = 0

    def step(rate: float, seconds: float) -> list[float]:
        nonlocal loaded
        etas = []
        for _ in range(int(seconds * 2)):
            clock.t += 0.5
            loaded += int(rate * 0.5)
            c = console()
            c.print(reporter.render(counters(loaded, total=300_000), []))
            etas.append(_eta_seconds(output(c)))
        return etas

    steady = step(1_000, 20)[-1]
    assert 260 <= steady <= 290
    swing = step(0, 10) + step(6_000, 2) + step(1_000, 10)
    assert all(0.8 * steady <= eta <= 1.25 * steady for eta in swing), (steady, swing)
    slower = step(500, 240)[-1]  # the rate halves for good: the ETA follows
    remaining = (300_000 - loaded) / 500
    assert abs(slower - remaining) <= 0.1 * remaining


def test_smoothed_rate_follows_time_not_the_number_of_updates() -> None:
    """Ten updates 0.1 s apart weigh what one update 1 s later does."""
    fine, coarse = SmoothedRate(60), SmoothedRate(60)
    fine.update(0.0, 0)
    coarse.update(0.0, 0)
    fine.update(1.0, 1_000)
    coarse.update(1.0, 1_000)
    for k in range(1, 11):
        fine.update(1.0 + k / 10, 1_000)
    coarse.update(2.0, 1_000)
    assert fine.value is not None and coarse.value is not None
    assert abs(fine.value - coarse.value) < 1.0


def test_the_shard_table_explains_its_column_and_leaves_out_empty_slices() -> None:
    """The open-ended oldest shard that found no event is counted, not listed as
    a "done 0" row with no time; the time column says what it is and never shows a time
    below the shard's own slice."""
    shards = [
        ShardState(
            "full-00", T0_MS - 60_000, T0_MS, Position(T0_MS - 86_400_000), None, "done", 500
        ),
        ShardState("full-15", None, 1, status="done"),
    ]
    con = console()
    con.print(RichReporter(con, get_time=FakeClock()).render(counters(500), shards))
    text = words(output(con))
    assert "full-15" not in text
    assert "1 empty (no event in its time slice), not listed" in text
    assert "read down to (UTC)" in text and "at (UTC)" not in text
    # its last page reached a day below its slice (the next shard's events): it shows the
    # bottom of its own slice
    assert "full-00 done 500 2026-01-27 18:59:00" in text
    assert "newest first" in text


def test_status_after_an_up_to_date_run_shows_the_last_real_load() -> None:
    """A run that found nothing new does not turn the figures into 0 ev/s and 0s: they are
    the last loading run's, and the view says so."""
    base = snapshot("succeeded")
    noop = dataclasses.replace(
        base.run,  # type: ignore[arg-type]
        run_id=8,
        inserted=0,
        received=0,
        started_at=T0 + dt.timedelta(hours=1),
        ended_at=T0 + dt.timedelta(hours=1, seconds=1),
        heartbeat_at=T0 + dt.timedelta(hours=1, seconds=1),
    )
    status = dataclasses.replace(base, run=noop, last_load=base.run, rate_now_per_s=None)
    con = console()
    con.print(render_status(status, where="postgresql://u:***@db/etl"))
    text = words(output(con))
    assert "database: postgresql://u:***@db/etl" in text
    assert "run 8 found nothing new" in text and "run 7, the last that loaded events" in text
    assert "average 5 ev/s" in text and "elapsed 10m00s" in text
    assert "0 ev/s" not in text
    doc = snapshot_to_json(status)
    assert doc["last_load"]["id"] == 7 and doc["rate"]["average_per_s"] == 5.0


def test_an_incomplete_run_says_why() -> None:
    """The shortfall of an incomplete run is shown as its reason, not as an error."""
    con = console()
    con.print(render_status(snapshot("incomplete", "every shard is done, but 12 missing")))
    text = words(output(con))
    assert "run 7 incomplete" in text and "why: every shard is done, but 12 missing" in text


def test_status_and_runs_name_the_database_they_found_empty(db_url: str, tmp_path: Path) -> None:
    """ "No ingest has run" says against what: the URL (password hidden) or the data dir."""
    secret_url = re.sub(r"//([^:@/]+)(:[^@]*)?@", r"//\1:pw-Zq9@", db_url, count=1)
    assert "pw-Zq9" in secret_url
    result = invoke(["status"], {"DATABASE_URL": secret_url})
    assert result.exit_code == 0
    assert result.stdout.strip().startswith("no ingest has run against postgresql://")
    assert "pw-Zq9" not in result.stdout and "***" in result.stdout
    result = invoke(["status", "--json"], {"ETL_DATA_DIR": str(tmp_path)})
    doc = json.loads(result.stdout)
    assert doc["initialized"] is False and str(tmp_path) in doc["database"]
    result = invoke(["runs"], {"ETL_DATA_DIR": str(tmp_path)})
    assert result.stdout.strip() == (
        f"no ingest has run against {tmp_path} (no embedded database there) yet"
    )


async def test_after_a_noop_incremental_run_status_keeps_the_real_load(
    sandbox: Any, db_url: str
) -> None:
    """Real sandbox and PostgreSQL: a full sync, then an up-to-date run. `etl status` reads
    the second run but reports the first one's rate and duration."""
    clock = RunClock()
    sb = await sandbox(events=5_000, clock=LinkedClock(clock), unlimited=True)
    first = await ingest(sb.base_url, sb.api_key, db_url, clock)
    second = await ingest(sb.base_url, sb.api_key, db_url, clock)
    assert first.counters.inserted == 5_000 and "up to date" in second.planned
    status: StatusSnapshot = await read_status(db_url)
    assert status.run is not None and status.run.inserted == 0
    assert status.last_load is not None and status.last_load.inserted == 5_000
    assert status.rate_avg_per_s and status.rate_avg_per_s > 0
    assert all(isinstance(s, ShardRow) for s in status.shards)
