"""The declarative GitHub source end to end: sandbox -> spec -> its own tables, exactly once."""

from __future__ import annotations

import pytest

from etl.clock import FakeClock
from etl.errors import AuthError, ExitCode
from etl.sink.tokens import PgTokenStore
from tests.rest_harness import (
    Bridge,
    expected_issues,
    github_spec,
    loaded_issues,
    rows,
    run,
    sign_in,
    spec_here,
)


async def _github(github_sandbox, **overrides):
    return await github_sandbox(clock=Bridge(FakeClock()), **overrides)


async def test_every_issue_and_comment_lands_in_its_own_table(github_sandbox, db_url):
    """A first sync loads both streams whole: the exact ids, numeric ids kept as bigint."""
    gh = await _github(github_sandbox)
    await sign_in(gh, db_url)
    results = await run(github_spec(gh), gh, db_url)
    assert [(r.stream, r.status) for r in results] == [
        ("issues", "succeeded"),
        ("issue_comments", "succeeded"),
    ]
    assert await loaded_issues(db_url) == expected_issues(gh)
    comments = await rows(db_url, "SELECT id FROM github_issue_comments")
    assert {r["id"] for r in comments} == set(gh.state.repo.comments)
    prs = await rows(db_url, "SELECT count(*) AS n FROM github_issues WHERE is_pull_request")
    assert prs[0]["n"] == sum(i.pull_request for i in gh.state.repo.issues.values())
    state = await rows(db_url, "SELECT stream, status, cursor_value FROM stream_state")
    assert {r["stream"]: r["status"] for r in state} == {
        "issues": "succeeded",
        "issue_comments": "succeeded",
    }


async def test_the_next_run_reads_only_what_changed_and_the_latest_edit_wins(
    github_sandbox, db_url
):
    """After edits, a second sync asks with since=<cursor - look-back>, gets one page, and
    the edited title replaces the old one; a new issue is added."""
    gh = await _github(github_sandbox)
    await sign_in(gh, db_url)
    await run(github_spec(gh), gh, db_url, streams=["issues"])
    before = gh.state.stats.requests["issues"]
    gh.clock.advance(3600)
    gh.state.repo.touch(3, gh.clock.time(), title="edited later")
    gh.state.repo.add_issue(gh.clock.time())
    (result,) = await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert gh.state.stats.requests["issues"] - before == 1
    assert result.rows <= 3 and result.inserted == 1
    assert await loaded_issues(db_url) == expected_issues(gh)


async def test_a_stopped_run_resumes_at_its_next_page(github_sandbox, db_url):
    """Stopped after 2 pages (exit 3 in the CLI), the next run continues at page 3 from the
    stored Link URL instead of starting over; the set is exact."""
    gh = await _github(github_sandbox, issues=250)
    await sign_in(gh, db_url)
    (first,) = await run(github_spec(gh), gh, db_url, streams=["issues"], should_stop=_after(2))
    assert (first.status, first.pages) == ("partial", 2)
    stored = await rows(db_url, "SELECT next_request FROM stream_state WHERE stream='issues'")
    assert "page=3" in stored[0]["next_request"]
    (second,) = await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert (second.status, second.pages) == ("succeeded", 1)
    assert await loaded_issues(db_url) == expected_issues(gh)


def _after(pages: int):
    seen = {"n": 0}

    def should_stop() -> bool:
        seen["n"] += 1
        return seen["n"] >= pages

    return should_stop


async def test_both_rate_limits_are_waited_out(github_sandbox, db_url):
    """3 requests per hour and 1 per minute: the run waits for the primary reset before
    it is refused (x-ratelimit-remaining 0) and for retry-after after a secondary 429
    (virtual time), and still loads the exact set."""
    gh = await _github(
        github_sandbox, issues=250, primary_limit=3, secondary_per_minute=1, secondary_status=429
    )
    await sign_in(gh, db_url)
    started = gh.clock.time()
    (result,) = await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert result.status == "succeeded"
    assert await loaded_issues(db_url) == expected_issues(gh)
    statuses = gh.state.stats.statuses
    assert statuses["issues", 429] >= 1  # secondary: met, then waited out
    assert statuses["issues", 403] == 0  # primary: never spent past its last request
    # 3 pages and the refused requests (the sandbox charges them too) at 3 per hour
    assert gh.clock.time() - started >= 3600


async def test_server_faults_are_retried_without_loss(github_sandbox, db_url):
    """5xx pages, truncated JSON and dropped connections: retried; the set is exact."""
    gh = await _github(github_sandbox, issues=300, p_503=0.15, p_truncate=0.1, p_drop=0.1)
    await sign_in(gh, db_url)
    results = await run(github_spec(gh), gh, db_url)
    assert all(r.status == "succeeded" for r in results)
    assert await loaded_issues(db_url) == expected_issues(gh)
    assert sum(gh.state.stats.faults.values()) > 0


async def test_a_token_expiring_mid_run_is_refreshed_and_rotated(github_sandbox, db_url):
    """Access tokens living 30 min and an hour-long rate-limit wait: the run refreshes the
    token (once per expiry), stores the rotated one, and loads everything."""
    gh = await _github(github_sandbox, issues=250, primary_limit=2, access_token_ttl=1800)
    first = await sign_in(gh, db_url)
    (result,) = await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert result.status == "succeeded"
    assert gh.state.oauth.refreshes >= 1
    stored = await PgTokenStore(db_url).load("github")
    assert stored is not None and stored.refresh_token != first.refresh_token
    assert await loaded_issues(db_url) == expected_issues(gh)


async def test_a_revoked_sign_in_stops_with_exit_4_and_what_to_run(github_sandbox, db_url):
    """The stored refresh token was spent elsewhere: exit 4, `etl auth github`, the stream
    marked failed with the same sentence, no token in it."""
    gh = await _github(github_sandbox)
    tokens = await sign_in(gh, db_url)
    gh.state.oauth.refresh.clear()
    gh.state.oauth.access.pop(tokens.access_token)
    with pytest.raises(AuthError) as err:
        await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert err.value.exit_code == ExitCode.AUTH and "etl auth github" in str(err.value)
    state = await rows(db_url, "SELECT status, last_error FROM stream_state")
    assert state[0]["status"] == "failed" and tokens.refresh_token not in state[0]["last_error"]


TINY = """
name: tiny
config:
  api: {env: API, required: true}
  token: {env: TOKEN, required: true, secret: true}
auth: {type: bearer, value: "${token}", scheme: token}
base_url: ${api}
streams:
  closed:
    path: /repos/sandbox-org/demo/issues
    params: {state: all}
    paginator: {type: page_number, param: page, size_param: per_page, size: 40}
    primary_key: number
    columns:
      number: integer
      closed_at: {type: timestamp, nullable: false}
      title: text
"""


async def test_a_spec_written_here_pages_by_number_and_quarantines_bad_records(
    github_sandbox, db_url
):
    """A spec only this test knows: bearer auth, page-number pagination, and a required
    field most records lack: those go to the quarantine with the reason, none loaded
    stripped, none lost."""
    gh = await _github(github_sandbox)
    (result,) = await run(spec_here(TINY, gh), gh, db_url)
    closed = {i.number for i in gh.state.repo.issues.values() if i.closed is not None}
    loaded = await rows(db_url, "SELECT number FROM tiny_closed")
    assert {r["number"] for r in loaded} == closed
    bad = await rows(db_url, "SELECT reason, occurrences FROM stream_quarantine")
    assert len(bad) == 120 - len(closed) and {r["reason"] for r in bad} == {"closed_at: missing"}
    assert result.quarantined == len(bad) and result.pages == 4


async def test_a_stored_next_page_the_api_refuses_restarts_from_the_cursor(github_sandbox, db_url):
    """A checkpointed next request that now fails (404) resets the pagination to the
    committed cursor instead of failing or starting from scratch."""
    gh = await _github(github_sandbox)
    await sign_in(gh, db_url)
    await run(github_spec(gh), gh, db_url, streams=["issues"])
    await rows(
        db_url,
        "UPDATE stream_state SET next_request = $1::jsonb WHERE stream = 'issues'",
        '{"url": "' + gh.base_url + '/repos/gone/away/issues?page=7", "params": []}',
    )
    (result,) = await run(github_spec(gh), gh, db_url, streams=["issues"])
    assert (result.status, result.resets) == ("succeeded", 1)
    assert await loaded_issues(db_url) == expected_issues(gh)


DATASYNC_AS_A_SPEC = """
name: ds
config:
  api: {env: API, required: true}
  key: {env: KEY, required: true, secret: true}
auth: {type: api_key, value: "${key}", name: api_key, in: query}
base_url: ${api}
streams:
  events:
    path: /events
    params: {limit: "500"}
    records: data
    paginator: {type: cursor, cursor_path: pagination.nextCursor, param: cursor}
    primary_key: id
    columns:
      id: uuid
      type: text
      occurred_at: {type: timestamp, from: timestamp, nullable: false}
"""


async def test_the_datasync_api_as_a_spec_with_a_key_in_the_query(sandbox, db_url):
    """DataSync's /events read through a spec: cursor in the body, the key as ?api_key=,
    mixed timestamp formats through the normalizer; the exact id set, and the key is
    never written to the progress row (also when a URL echoes it)."""
    from etl.auth.schemes import ApiKey
    from etl.cli.sync import sync_source
    from etl.rest.client import RestClient
    from etl.rest.load import parse, resolve
    from etl.rest.paginate import Request
    from etl.source.http import Http
    from etl.source.retry import RetryPolicy
    from tests.ingest_harness import LinkedClock

    clock = FakeClock()
    sb = await sandbox(events=2_000, clock=LinkedClock(clock), query_auth_limit=1000)
    spec = resolve(parse(DATASYNC_AS_A_SPEC), {"API": sb.base_url, "KEY": sb.api_key})
    stop_after = {"n": 0}

    def should_stop() -> bool:
        stop_after["n"] += 1
        return stop_after["n"] >= 2

    kw = {"clock": clock, "retry": RetryPolicy(max_attempts=5)}
    (first,) = await sync_source(spec, db_url, should_stop=should_stop, **kw)
    stored = await rows(db_url, "SELECT next_request::text AS r FROM stream_state")
    assert first.status == "partial" and sb.api_key not in stored[0]["r"]
    (second,) = await sync_source(spec, db_url, **kw)
    assert second.status == "succeeded"
    loaded = await rows(db_url, "SELECT id::text AS id FROM ds_events")
    assert sorted(r["id"] for r in loaded) == sorted(sb.ids())
    async with Http(sb.base_url, "") as http:
        client = RestClient(http, ApiKey(sb.api_key, name="api_key", location="query"),
                            clock=clock, wall=lambda: 0.0)  # fmt: skip
        await client.fetch(spec.streams[0], Request(sb.base_url + "/events", (("limit", "1"),)))
        echoed = Request(f"{sb.base_url}/events?api_key={sb.api_key}&cursor=abc")
        assert sb.api_key not in str(client.storable(echoed).to_json())
