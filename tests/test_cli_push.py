"""`etl push` and `etl deliveries` as a user runs them: real processes, exit codes, SIGKILLs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

from etl.sandbox.clock import SystemClock
from etl.sandbox.databox.config import DATABOX_DEMO_KEY, DataboxConfig
from tests.fixtures_sandbox import SandboxFactory, SandboxHandle
from tests.push_harness import databox_url, load, make_records, query, remote


async def etl(
    args: list[str], env: dict[str, str], *, kill_after_s: float | None = None
) -> tuple[int, str, str]:
    """Run ``python -m etl ARGS`` (the test's loop keeps serving the sandbox meanwhile);
    SIGKILL it after ``kill_after_s`` if given."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "etl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", "DATABASE_URL": "", **env},
    )
    if kill_after_s is None:
        out, err = await proc.communicate()
    else:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), kill_after_s)
        except TimeoutError:
            proc.send_signal(signal.SIGKILL)
            out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def live_sandbox(sandbox: SandboxFactory, **databox: object) -> SandboxHandle:
    """A sandbox on the wall clock: the pusher is another process, on real time."""
    return await sandbox(events=10, clock=SystemClock(), databox=DataboxConfig(**databox))  # type: ignore[arg-type]


def push_env(
    db_url: str, sb: SandboxHandle, tmp_path: Path, key: str = DATABOX_DEMO_KEY
) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "DATABOX_API_URL": databox_url(sb),
        "DATABOX_API_KEY": key,
        "ETL_DATA_DIR": str(tmp_path),
        "ETL_PUSH_RATE": "500",
    }


async def test_push_then_deliveries(sandbox: SandboxFactory, db_url: str, tmp_path: Path) -> None:
    """`etl push --dataset events` exits 0 with a summary; `etl deliveries` lists each
    request (table and --json, filtered by destination and status); delivery.jsonl has them."""
    sb = await live_sandbox(sandbox, rate_limit=1000)
    records = make_records(250)
    await load(db_url, records)
    env = push_env(db_url, sb, tmp_path)
    code, out, err = await etl(["push", "--dataset", "events"], env)
    assert code == 0, err
    assert "250 records in 3 requests accepted" in out
    assert "events: declared" in err and "created dataset" in err
    code, out, _ = await etl(["deliveries", "--destination", "databox", "--json"], env)
    doc = json.loads(out)
    assert [d["rows"] for d in doc["deliveries"]] == [50, 100, 100]
    assert all(d["success"] and d["accepted"] == d["rows"] for d in doc["deliveries"])
    code, out, _ = await etl(["deliveries", "--status", "failed", "--json"], env)
    assert json.loads(out)["deliveries"] == []
    code, out, _ = await etl(["deliveries", "--since", "1h"], env)
    assert code == 0 and "databox" in out and "postgresql" in out
    lines = (tmp_path / "delivery.jsonl").read_text().splitlines()
    pushed = [json.loads(line) for line in lines if '"destination": "databox"' in line]
    assert [p["event"] for p in pushed].count("request") == 3
    assert DATABOX_DEMO_KEY not in "".join(lines)


async def test_a_refused_key_exits_12_in_one_line(
    sandbox: SandboxFactory, db_url: str, tmp_path: Path
) -> None:
    """401 from Databox: exit 14, one clear line naming the variable, no traceback, no key."""
    sb = await live_sandbox(sandbox)
    await load(db_url, make_records(5))
    code, out, err = await etl(
        ["push", "--dataset", "events"], push_env(db_url, sb, tmp_path, key="dbx_nope_Zq9")
    )
    assert code == 14
    assert err.strip().splitlines()[-1].startswith("error: Databox refused the API key (401")
    assert "DATABOX_API_KEY" in err and "Traceback" not in err and "dbx_nope_Zq9" not in err + out


async def test_bad_input_is_a_clear_error(
    sandbox: SandboxFactory, db_url: str, tmp_path: Path
) -> None:
    """An unknown dataset, a missing key or a bad --since: exit 2 with one line."""
    sb = await live_sandbox(sandbox)
    env = push_env(db_url, sb, tmp_path)
    code, _, err = await etl(["push", "--dataset", "nope"], env)
    assert code == 2 and "unknown dataset 'nope': one of events, hourly_event_counts" in err
    code, _, err = await etl(["push"], {**env, "DATABOX_API_KEY": ""})
    assert code == 2 and "Databox API key is required" in err
    code, _, err = await etl(["deliveries", "--since", "yesterday"], env)
    assert code == 2 and "--since must be an ISO time" in err


async def test_sigkills_during_a_push_leave_every_record_exactly_once(
    sandbox: SandboxFactory, db_url: str, tmp_path: Path
) -> None:
    """The small kill test: `etl push` is SIGKILLed at random moments (after a random number
    of stored chunks, right before the answer leaves: the lost-answer case; or at a random
    time), rerun until it ends: the dataset holds every loaded event exactly once."""
    sb = await live_sandbox(sandbox, rate_limit=1000, p_lost=0.05, fault_seed=5)
    records = make_records(3_000)
    await load(db_url, records, batch=1_000)
    env = push_env(db_url, sb, tmp_path)
    rnd = random.Random(11)
    proc: asyncio.subprocess.Process | None = None
    stored = 0
    kill_at = 0

    def on_stored() -> None:
        nonlocal stored
        stored += 1
        if proc is not None and proc.returncode is None and stored >= kill_at:
            proc.send_signal(signal.SIGKILL)

    sb.state.databox.on_stored = on_stored
    kills = 0
    for attempt in range(12):
        kill_at = stored + rnd.randint(1, 6) if attempt < 8 else 10**9
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "etl",
            "push",
            "--dataset",
            "events",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1", **env},
        )
        _, err = await proc.communicate()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        kills += 1
    assert proc is not None and proc.returncode == 0 and kills == 8
    stored_records = remote(sb, "etl events")
    assert len(stored_records) == 3_000
    assert {r["id"] for r in stored_records} == {r[0] for r in records}
    ds = next(iter(sb.state.databox.store.datasets.values()))
    assert ds.received_total > 3_000  # the killed chunks were stored, then sent again
    assert await query(db_url, "SELECT * FROM push_outbox") == []


async def test_ingest_push_with_a_refused_key_loads_everything_then_exits_14(
    sandbox: SandboxFactory, db_url: str, tmp_path: Path
) -> None:
    """`etl ingest --push` whose Databox key is refused: the load is not held back (every
    event is loaded, and owed in the outbox for a later `etl push`), then exit 14."""
    sb = await sandbox(events=3_000, clock=SystemClock(), unlimited=True)  # type: ignore[arg-type]
    env = {
        **push_env(db_url, sb, tmp_path, key="dbx_nope_Zq9"),
        "DATASYNC_API_URL": sb.base_url,
        "DATASYNC_API_KEY": sb.api_key,
    }
    code, out, err = await etl(["ingest", "--push", "--push-dataset", "events"], env)
    assert code == 14, err
    assert "Databox refused the API key" in err and "dbx_nope_Zq9" not in out + err
    loaded = await query(db_url, "SELECT count(*) AS n FROM events")
    owed = await query(db_url, "SELECT sum(cardinality(event_ids) - sent) AS n FROM push_outbox")
    assert loaded[0]["n"] == 3_000 and owed[0]["n"] == 3_000
