"""The contract every source passes (tests/contract.py): DataSync, the GitHub spec and a
spec written only in the tests, under the same scenarios."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.contract import Adapter, DataSync, GitHub, Tiny

ADAPTERS = {"datasync": DataSync, "github": GitHub, "tiny": Tiny}


@pytest.fixture(params=list(ADAPTERS))
def source(request: pytest.FixtureRequest, sandbox: Any, github_sandbox: Any, db_url: str):
    cls = ADAPTERS[request.param]
    return cls(sandbox if cls is DataSync else github_sandbox, db_url)


async def assert_exactly_once(source: Adapter) -> None:
    loaded = await source.loaded()
    assert not [k for k, n in Counter(loaded).items() if n > 1], "a record loaded twice"
    assert set(loaded) == source.every_key() or source.bad(), "records missing or extra"
    assert set(loaded) <= source.every_key()
    assert len(loaded) == len(source.every_key()) - source.bad()


async def test_a_run_loads_every_record_once(source: Adapter):
    """A plain run: every record the API holds, once."""
    await source.start()
    assert await source.sync() == "succeeded"
    await assert_exactly_once(source)


async def test_a_stopped_run_resumes_without_loss_or_duplicates(source: Adapter):
    """Stopped after two committed pages (as a signal or --max-runtime does), the next run
    finishes the job: nothing lost, nothing twice."""
    await source.start()
    assert await source.sync(stop_after=2) == "partial"
    assert 0 < len(await source.loaded()) < len(source.every_key())
    assert await source.sync() == "succeeded"
    await assert_exactly_once(source)


async def test_rate_limits_are_waited_out(source: Adapter):
    """429 with Retry-After: waited out (virtual time), the set is exact."""
    await source.start("throttled")
    assert await source.sync() == "succeeded"
    assert source.refused() > 0
    await assert_exactly_once(source)


async def test_server_faults_are_retried(source: Adapter):
    """5xx pages, truncated bodies, dropped connections: retried, the set is exact."""
    await source.start("faults")
    assert await source.sync() == "succeeded"
    assert source.faults() > 0
    await assert_exactly_once(source)


async def test_expired_cursors_or_tokens_are_renewed(source: Adapter):
    """Cursors (DataSync) or access tokens (OAuth2) expire while the run waits on a rate
    limit: renewed, never restarted, the set is exact."""
    await source.start("expiring")
    assert await source.sync() == "succeeded"
    assert source.renewed() > 0
    await assert_exactly_once(source)


async def test_malformed_records_are_quarantined_not_lost(source: Adapter):
    """Records that cannot be loaded go to the quarantine, one each; all others load."""
    await source.start("malformed")
    assert await source.sync() == "succeeded"
    assert source.bad() > 0
    assert await source.quarantined() == source.bad()
    await assert_exactly_once(source)


@pytest.mark.parametrize("name", list(ADAPTERS))
async def test_kill_9_mid_run_then_rerun_is_exact(
    name: str, sandbox: Any, github_sandbox: Any, db_url: str, tmp_path: Any
):
    """A real `etl` process killed with SIGKILL at two random moments; the rerun ends with
    every record once (each page commits with its checkpoint)."""
    import asyncio
    import random
    import signal

    from etl.sandbox import SystemClock
    from tests.contract import TINY
    from tests.rest_harness import sign_in
    from tests.test_cli_ingest import env_for, etl, ingest_args, run_etl, slow_sandbox

    if name == "datasync":
        sb = await slow_sandbox(sandbox, 20_000, latency_per_page=0.3)
        args, env = ingest_args(sb, db_url), env_for(DATASYNC_API_KEY=sb.api_key)
        expected, table, key = set(sb.ids()), "events", "id::text"
    else:
        gh = await github_sandbox(clock=SystemClock(), issues=1200, latency=0.15)
        env = env_for(
            GITHUB_API_URL=gh.base_url,
            GITHUB_OAUTH_URL=gh.base_url + "/login",
            API=gh.base_url,
            DATABASE_URL=db_url,
        )
        if name == "github":
            await sign_in(gh, db_url)
            args, table = ["sync", "github", "--stream", "issues"], "github_issues"
        else:
            spec = tmp_path / "tiny.yaml"
            spec.write_text(TINY)
            args, table = ["sync", str(spec)], "tiny_issues"
        expected, key = {i.id for i in gh.state.repo.issues.values()}, "id"
    rng = random.Random(name)
    killed = 0
    for _ in range(2):
        proc = await etl(*args, env=env)
        await asyncio.sleep(rng.uniform(0.8, 1.5))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        killed += await proc.wait() == -signal.SIGKILL
    assert killed >= 1  # at least one kill landed mid-run
    code, out = await run_etl(*args, env=env)
    assert code == 0, out
    from tests.rest_harness import rows

    loaded = [r["k"] for r in await rows(db_url, f"SELECT {key} AS k FROM {table}")]
    assert len(loaded) == len(set(loaded)) and set(loaded) == expected
