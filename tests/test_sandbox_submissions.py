"""POST/GET /api/v1/submissions: both body forms, the counts, and the 5-per-key limit."""

from __future__ import annotations

import json

import aiohttp

from tests.fixtures_sandbox import SandboxFactory, fetch

REPO = "https://github.com/example/etl"


async def test_text_plain_submission_reports_correct_missing_unknown_duplicates(
    sandbox: SandboxFactory,
) -> None:
    """A text/plain submission is scored: correct, missing, unknown and duplicate ids counted
    exactly."""
    sb = await sandbox()
    ids = sb.dataset.ids()
    sent = [*ids[:15_000], ids[0], ids[1], "00000000-0000-4000-8000-000000000000", "junk"]
    sb.clock.advance(65)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        await fetch(http, "GET", sb.base_url)  # the key's first call starts the clock
        sb.clock.advance(1235)
        r = await fetch(
            http,
            "POST",
            sb.base_url + "/submissions",
            params={"github_repo": REPO},
            data="\n".join(sent),
            headers={"Content-Type": "text/plain"},
        )
        listed = await fetch(http, "GET", sb.base_url + "/submissions")
    assert r.status == 200, r.text
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert data["eventCount"] == len(sent)
    assert data["githubRepoUrl"] == REPO
    assert (data["correct"], data["missing"], data["unknown"], data["duplicates"]) == (
        15_000,
        5_000,
        2,
        2,
    )
    assert data["submissionNumber"] == 1 and data["remainingSubmissions"] == 4
    assert data["timeToSubmit"] == {
        "ms": 1_235_000,
        "seconds": 1235,
        "minutes": 20.6,
        "formatted": "20m 35s",
    }
    assert body["message"] == (
        f"Submission #1 received with {len(sent):,} event IDs. 4 submissions remaining."
    )
    assert listed.json()["data"] == [data]


async def test_json_bodies_and_the_limit_of_five(sandbox: SandboxFactory) -> None:
    """JSON submissions are accepted too, and a key may submit at most five times."""
    sb = await sandbox()
    ids = sb.dataset.ids()
    url = sb.base_url + "/submissions"
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        as_string = await fetch(
            http, "POST", url, json={"ids": "\n".join(ids), "githubRepoUrl": REPO}
        )
        as_list = await fetch(http, "POST", url, json={"ids": ids[:10], "githubRepoUrl": REPO})
        bad = await fetch(
            http,
            "POST",
            url,
            data=json.dumps({"nope": 1}),
            headers={"Content-Type": "application/json"},
        )
        fourth = await fetch(http, "POST", url, json={"ids": [], "githubRepoUrl": REPO})
        fifth = await fetch(http, "POST", url, json={"ids": [], "githubRepoUrl": REPO})
        sixth = await fetch(http, "POST", url, json={"ids": ids, "githubRepoUrl": REPO})
        listed = await fetch(http, "GET", url)
    assert as_string.json()["data"]["correct"] == 20_000
    assert as_string.json()["data"]["missing"] == 0
    assert as_list.json()["data"]["correct"] == 10
    assert bad.status == 400 and bad.json()["code"] == "INVALID_BODY"
    assert fourth.status == 200 and fifth.json()["data"]["remainingSubmissions"] == 0
    assert sixth.status == 403
    assert sixth.json()["code"] == "SUBMISSION_LIMIT_REACHED"
    assert len(listed.json()["data"]) == 4  # the failed POST counted but is not listed
