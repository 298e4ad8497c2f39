"""Child streams (``parent:`` in a spec): each issue's comments read per issue, driven by
the issues table, against the sandbox's GitHub surface and a real PostgreSQL."""

from __future__ import annotations

import pytest

from etl.clock import FakeClock
from etl.rest.load import parse
from etl.rest.nodes import SpecError
from tests.rest_harness import Bridge, rows, run, spec_here

KIDS = """
name: kids
config:
  api: {env: API, required: true}
  token: {env: TOKEN, required: true, secret: true}
auth: {type: bearer, value: "${token}", scheme: token}
base_url: ${api}
defaults:
  paginator: {type: link_header}
streams:
  issues:
    path: /repos/sandbox-org/demo/issues
    params: {state: all, sort: updated, direction: asc, per_page: "50"}
    primary_key: id
    incremental: {cursor_field: updated_at, param: since, lookback: 1s}
    columns:
      id: bigint
      number: integer
      updated_at: {type: timestamp, nullable: false}
  comments:
    parent: issues
    path: /repos/sandbox-org/demo/issues/{number}/comments
    params: {per_page: "2"}
    primary_key: id
    incremental: {cursor_field: updated_at, param: since, lookback: 1s}
    columns:
      id: bigint
      issue_url: text
      updated_at: {type: timestamp, nullable: false}
"""


async def _github(github_sandbox, **overrides):
    return await github_sandbox(clock=Bridge(FakeClock()), **overrides)


async def loaded_comments(db_url: str) -> list[int]:
    return sorted(r["id"] for r in await rows(db_url, "SELECT id FROM kids_comments"))


def every_comment(gh) -> list[int]:
    return sorted(gh.state.repo.comments)


def pages_per_issue(gh, per_page: int = 2) -> int:
    return sum(max(1, -(-len(i.comments) // per_page)) for i in gh.state.repo.issues.values())


async def test_a_child_stream_reads_every_parents_records_once(github_sandbox, db_url):
    """After the issues, each issue's comments, every page of each (2 per page): every
    comment once; the child's mark is the newest issue's updated_at."""
    gh = await _github(github_sandbox)
    results = await run(spec_here(KIDS, gh), gh, db_url)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert await loaded_comments(db_url) == every_comment(gh)
    assert gh.state.stats.requests["comments"] == pages_per_issue(gh)
    marks = await rows(db_url, "SELECT stream, cursor_value FROM stream_state")
    mark = {r["stream"]: r["cursor_value"] for r in marks}
    assert mark["comments"] == mark["issues"] is not None  # the newest issue's updated_at


async def test_a_rerun_reads_only_the_issues_that_changed(github_sandbox, db_url):
    """A new comment (which moves its issue's updated_at): the rerun asks for the comments
    of that issue (and of the issues at the old mark's second), not of every issue."""
    gh = await _github(github_sandbox)
    await run(spec_here(KIDS, gh), gh, db_url)
    before = gh.state.stats.requests["comments"]
    old_mark = max(i.updated for i in gh.state.repo.issues.values())
    gh.clock.advance(60)
    new = gh.state.repo.add_comment(7, gh.clock.time())
    results = await run(spec_here(KIDS, gh), gh, db_url)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert new.id in await loaded_comments(db_url)
    assert await loaded_comments(db_url) == every_comment(gh)
    changed = [i for i in gh.state.repo.issues.values() if i.updated >= old_mark]
    assert len(changed) < 5  # issue 7 and the issues of the old mark's second
    assert gh.state.stats.requests["comments"] - before == len(changed)  # one page each


async def test_a_stopped_child_resumes_inside_the_issue_it_was_reading(github_sandbox, db_url):
    """Stopped after a few pages of comments (mid-issue: 2 per page): partial, then the
    rerun continues from the stored issue and page and ends with every comment once."""
    gh = await _github(github_sandbox)
    spec = spec_here(KIDS, gh)
    await run(spec, gh, db_url, streams=["issues"])
    pages = 0

    def should_stop() -> bool:
        nonlocal pages
        pages += 1
        return pages >= 5

    (partial,) = await run(spec, gh, db_url, streams=["comments"], should_stop=should_stop)
    assert partial.status == "partial"
    (state,) = await rows(db_url, "SELECT next_request FROM stream_state WHERE stream = 'comments'")
    assert '"parent"' in state["next_request"]
    (result,) = await run(spec, gh, db_url, streams=["comments"])
    assert result.status == "succeeded"
    assert await loaded_comments(db_url) == every_comment(gh)
    assert gh.state.stats.requests["comments"] <= pages_per_issue(gh) + 1


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("parent: issues", "parent: isues", "'isues' is not a stream declared before this one"),
        ("{number}/", "{nummer}/", "the path's {nummer} is not a column of 'issues'"),
        ("    parent: issues\n", "", "{number} names a parent's column, and the stream has no"),
    ],
)
def test_a_child_that_names_what_its_parent_lacks_is_rejected_with_its_line(old, new, said):
    """An unknown parent, a path field the parent has no column for, or a path field
    without a parent: exit 2 with the file and line, before any request."""
    with pytest.raises(SpecError, match=r"kids\.yaml:[0-9]+: streams\.comments") as err:
        parse(KIDS.replace(old, new), "kids.yaml")
    assert said in str(err.value) and err.value.exit_code == 2
