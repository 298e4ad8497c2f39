"""`etl sources / discover / check / auth / sync` as a user runs them: real processes,
the sandbox's GitHub surface on the real clock, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import signal

import asyncpg

from etl.errors import ExitCode
from etl.sandbox import SystemClock
from tests.rest_harness import expected_issues, loaded_issues, rows, sign_in
from tests.test_cli_ingest import env_for, etl, run_etl


def _env(gh, db_url: str) -> dict[str, str]:
    return env_for(
        GITHUB_API_URL=gh.base_url, GITHUB_OAUTH_URL=gh.base_url + "/login", DATABASE_URL=db_url
    )


async def until_a_page_is_committed(db_url: str, proc: asyncio.subprocess.Process) -> None:
    """Until the sync has committed its first page (its table has rows): a fixed pause
    was too short on a loaded machine, where the process was still starting."""
    for _ in range(1200):
        assert proc.returncode is None, "the sync ended before its first page"
        try:
            if await rows(db_url, "SELECT 1 FROM github_issues LIMIT 1"):
                return
        except asyncpg.UndefinedTableError:
            pass  # the sync has not created its table yet
        await asyncio.sleep(0.05)  # poll the condition (no event to wait on across processes)
    raise AssertionError("no page committed in 60 s")


async def test_sources_lists_each_source_with_its_streams():
    """DataSync (built in) and GitHub (a spec) are listed with their streams."""
    code, out = await run_etl("sources", "--json", env=env_for())
    assert code == 0
    found = {s["name"]: s for s in json.loads(out)}
    assert found["github"]["streams"] == ["issues", "issue_comments"]
    assert found["datasync"]["kind"] == "python"


async def test_discover_shows_tables_keys_and_columns_but_no_secret():
    """discover prints each stream's table, key, cursor and typed columns, and names the
    secret config parameters without a value."""
    code, out = await run_etl("discover", "github", "--json", env=env_for())
    assert code == 0
    doc = json.loads(out)
    issues = doc["streams"][0]
    assert (issues["table"], issues["primary_key"], issues["cursor"]) == (
        "github_issues",
        ["id"],
        "updated_at",
    )
    assert {"name": "id", "type": "bigint", "from": "id"} in issues["columns"]
    secret = next(p for p in doc["config"] if p["name"] == "refresh_token")
    assert secret["secret"] and secret["default"] is None


async def test_a_bad_spec_file_exits_2_with_its_line_before_any_request(tmp_path):
    """A spec with a typo: exit 2, `file:line: key path: ...`, no traceback."""
    bad = tmp_path / "api.yaml"
    bad.write_text("name: api\nbase_url: http://127.0.0.1:9/\nstreams:\n  a:\n    pth: /x\n")
    code, out = await run_etl("check", str(bad), env=env_for())
    assert code == ExitCode.CONFIG
    assert f"{bad}:5: streams.a: unknown key 'pth'" in out and "Traceback" not in out


async def test_check_without_sign_in_says_what_to_run(github_sandbox, db_url):
    """No stored tokens: exit 4 and `etl auth github`; signed in: ok in one request."""
    gh = await github_sandbox(clock=SystemClock())
    code, out = await run_etl("check", "github", env=_env(gh, db_url))
    assert code == ExitCode.AUTH and "etl auth github" in out
    await sign_in(gh, db_url)
    code, out = await run_etl("check", "github", env=_env(gh, db_url))
    assert code == 0 and out.startswith("ok: github (GET /user answered")


async def test_auth_signs_in_with_the_device_flow_and_prints_no_token(github_sandbox, db_url):
    """`etl auth github` shows the code and the page, waits for approval, stores tokens
    that `etl sync` then uses; neither command prints a token."""
    gh = await github_sandbox(clock=SystemClock(), time_scale=20, device_auto_approve=10)
    code, out = await run_etl("auth", "github", env=_env(gh, db_url))
    assert code == 0, out
    assert "/github/login/device" in out and "enter the code" in out
    issued = [t for t in gh.state.oauth.access if t.startswith("ghu_")]
    assert issued and not any(t in out for t in issued)
    code, out = await run_etl("sync", "github", env=_env(gh, db_url))
    assert code == 0, out
    assert "github.issues: succeeded, 120 rows" in out
    assert not any(t in out for t in gh.state.oauth.access)
    code, status = await run_etl("status", "--json", env=_env(gh, db_url))
    stored = await rows(db_url, "SELECT t::text AS t FROM source_tokens t")
    seen = status + "".join(r["t"] for r in stored)  # what a person reading them sees
    secrets = [*gh.state.oauth.access, *gh.state.oauth.refresh, *issued]
    assert code == 0 and not [t for t in secrets if t in seen]


async def test_kill_9_at_any_moment_then_rerun_loads_each_issue_once(github_sandbox, db_url):
    """SIGKILL mid-sync three times at random moments; the reruns resume and end with
    every issue exactly once (the page and its checkpoint commit together)."""
    gh = await github_sandbox(clock=SystemClock(), issues=1500, latency=0.05)
    await sign_in(gh, db_url)
    rng = random.Random(13)
    for _ in range(3):
        proc = await etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
        await asyncio.sleep(rng.uniform(0.6, 1.2))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    code, out = await run_etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
    assert code == 0, out
    assert await loaded_issues(db_url) == expected_issues(gh)


async def test_without_a_url_sync_reads_the_bundled_sandbox(db_url):
    """No GITHUB_API_URL: `etl sync github` starts the bundled sandbox, signs in to it by
    itself, loads it whole and says so; `etl auth github` refuses and says why."""
    env = env_for(DATABASE_URL=db_url)
    code, out = await run_etl("sync", "github", "--stream", "issues", env=env)
    assert code == 0, out
    assert "started the bundled sandbox" in out and "github.issues: succeeded, 500 rows" in out
    code, out = await run_etl("auth", "github", env=env)
    assert code == ExitCode.CONFIG and "set GITHUB_API_URL" in out


async def test_sigterm_stops_after_the_page_being_committed_with_exit_3(github_sandbox, db_url):
    """SIGTERM mid-sync: exit 3, the stream is partial with its next page stored, and the
    next run finishes it."""
    gh = await github_sandbox(clock=SystemClock(), issues=1500, latency=0.2)
    await sign_in(gh, db_url)
    proc = await etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
    await until_a_page_is_committed(db_url, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = await proc.communicate()
    assert proc.returncode == ExitCode.PARTIAL, err.decode()
    assert "github.issues: partial" in out.decode()
    code, rerun = await run_etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
    assert code == 0, rerun
    assert await loaded_issues(db_url) == expected_issues(gh)


async def test_status_and_health_show_every_stream(github_sandbox, db_url):
    """After `etl sync`, `etl status` and `etl runs` list each stream (rows, cursor, status,
    last sync) in text and JSON, `etl health` under their own names; a stream whose last
    sync failed makes `etl health` degraded, naming it."""
    gh = await github_sandbox(clock=SystemClock())
    await sign_in(gh, db_url)
    code, out = await run_etl("sync", "github", env=_env(gh, db_url))
    assert code == 0, out
    code, out = await run_etl("status", "--json", env=_env(gh, db_url))
    streams = {s["stream"]: s for s in json.loads(out)["streams"]}
    assert streams["issues"]["rows"] == 120 and streams["issues"]["status"] == "succeeded"
    assert streams["issue_comments"]["table"] == "github_issue_comments"
    code, out = await run_etl("status", env=_env(gh, db_url))
    assert "github.issues" in out and "github.issue_comments" in out
    code, out = await run_etl("health", env=_env(gh, db_url))
    assert code == 0, out
    assert "stream github.issue_comments: ok" in out and "last run:" in out
    code, out = await run_etl("runs", "--json", env=_env(gh, db_url))
    assert {s["stream"] for s in json.loads(out)["streams"]} == {"issues", "issue_comments"}
    code, out = await run_etl("runs", env=_env(gh, db_url))
    assert "streams (last sync" in out and "github.issue_comments" in out
    gh.state.oauth.refresh.clear()
    gh.state.oauth.access.clear()
    code, out = await run_etl("sync", "github", env=_env(gh, db_url))
    assert code == ExitCode.AUTH
    code, out = await run_etl("health", env=_env(gh, db_url))
    assert code != 0 and "stream github.issues failed" in out
