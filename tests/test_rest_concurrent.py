"""The streams of a declarative source run at once, drawing on one request budget."""

from __future__ import annotations

from etl.clock import FakeClock
from tests.rest_harness import (
    Bridge,
    expected_issues,
    github_spec,
    loaded_issues,
    rows,
    run,
    sign_in,
)


async def test_the_streams_of_a_source_load_at_the_same_time(github_sandbox, db_url):
    """Issues and comments are read side by side (each started before the other
    finished, as `etl status` shows), and each lands exactly once."""
    gh = await github_sandbox(clock=Bridge(FakeClock()), latency=0.05)
    await sign_in(gh, db_url)
    results = await run(github_spec(gh), gh, db_url)
    assert [(r.stream, r.status) for r in results] == [
        ("issues", "succeeded"),
        ("issue_comments", "succeeded"),
    ]
    assert all(r.pages > 1 for r in results)
    state = {
        r["stream"]: r
        for r in await rows(db_url, "SELECT stream, started_at, finished_at FROM stream_state")
    }
    issues, comments = state["issues"], state["issue_comments"]
    assert issues["started_at"] < comments["finished_at"]
    assert comments["started_at"] < issues["finished_at"]
    assert await loaded_issues(db_url) == expected_issues(gh)
    loaded = await rows(db_url, "SELECT id FROM github_issue_comments")
    assert {r["id"] for r in loaded} == set(gh.state.repo.comments)


async def test_streams_running_together_never_overspend_the_primary_limit(github_sandbox, db_url):
    """3 requests per hour for both streams together: requests are counted against the
    budget before they are sent, so neither stream is ever refused for the primary limit
    (no 403); they wait for the reset instead, and everything loads."""
    gh = await github_sandbox(clock=Bridge(FakeClock()), issues=250, primary_limit=3)
    await sign_in(gh, db_url)
    results = await run(github_spec(gh), gh, db_url)
    assert all(r.status == "succeeded" for r in results)
    statuses = gh.state.stats.statuses
    assert statuses["issues", 403] == 0 and statuses["comments", 403] == 0
    assert statuses["issues", 429] == 0 and statuses["comments", 429] == 0
    assert await loaded_issues(db_url) == expected_issues(gh)


async def test_the_budget_the_api_states_is_spent_without_waiting_then_waited_for():
    """Told 4,999 of 5,000 requests remain for an hour, the streams send at once (no wait
    for the first 4,999); with none left, no request goes until the API's reset, and a
    Retry-After pauses everyone for its length."""
    from etl.clock import FakeClock
    from etl.rest.budget import SharedBudget

    clock = FakeClock(autojump=False)
    budget = SharedBudget(clock)
    assert budget.ready()  # no limit stated yet: unmetered
    budget.observe(5000, 4999, 3600.0)
    for _ in range(4999):
        assert budget.ready()
        await budget.acquire()
    assert not budget.ready()
    clock.advance(3600.0 + 1.0)
    assert budget.ready()
    budget.pause_for(30.0)
    assert not budget.ready()
    clock.advance(30.0)
    assert budget.ready()
