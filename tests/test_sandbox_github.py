"""The sandbox's GitHub surface behaves like api.github.com where a client can tell."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import aiohttp

from etl.sandbox.github import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from etl.sandbox.github.config import GithubConfig
from etl.sandbox.github.data import Repository
from etl.sandbox.github.oauth import DEVICE_GRANT
from tests.fixtures_github import GithubHandle
from tests.fixtures_sandbox import fetch

JSON = {"Accept": "application/json"}


def _links(header: str | None) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header or "")}


async def _walk(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> list[dict]:
    out: list[dict] = []
    reply = await fetch(http, "GET", url, params=params)
    while True:
        assert reply.status == 200, reply.text
        out += reply.json()
        nxt = _links(reply.headers.get("Link")).get("next")
        if nxt is None:
            return out
        reply = await fetch(http, "GET", nxt)


async def test_issues_follow_link_header_in_update_order_since_inclusive(github_sandbox):
    """Following rel="next" yields every issue updated at/after ``since`` once, oldest first."""
    gh = await github_sandbox()
    params = {"state": "all", "sort": "updated", "direction": "asc", "per_page": "25"}
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        every = await _walk(http, gh.issues_url, params)
        assert len(every) == 120 == len({i["id"] for i in every})
        updated = [i["updated_at"] for i in every]
        assert updated == sorted(updated)
        pivot = updated[60]
        later = await _walk(http, gh.issues_url, {**params, "since": pivot})
    assert [i["id"] for i in later] == [i["id"] for i in every if i["updated_at"] >= pivot]
    assert any(i.get("pull_request") for i in every)
    assert all(isinstance(i["id"], int) and i["id"] > 2**31 for i in every)


async def test_link_header_names_first_prev_next_last_and_per_page_is_capped(github_sandbox):
    """Page 2 links all four relations; the last page has no next; per_page > 100 serves 100."""
    gh = await github_sandbox(issues=250)
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        r = await fetch(http, "GET", gh.issues_url, params={"state": "all", "page": "2"})
        assert set(_links(r.headers["Link"])) == {"first", "prev", "next", "last"}
        r = await fetch(http, "GET", gh.issues_url, params={"state": "all", "per_page": "500"})
        assert len(r.json()) == 100
        last = _links(r.headers["Link"])["last"]
        r = await fetch(http, "GET", last)
        assert len(r.json()) == 50 and "next" not in _links(r.headers.get("Link"))


async def test_an_edit_moves_the_issue_to_the_end_of_the_update_order(github_sandbox):
    """``touch`` bumps updated_at to now: an incremental reader sees the issue again."""
    gh = await github_sandbox()
    gh.state.repo.touch(3, gh.clock.time(), title="edited")
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        rows = await _walk(
            http, gh.issues_url, {"state": "all", "sort": "updated", "direction": "asc"}
        )
    assert rows[-1]["number"] == 3 and rows[-1]["title"] == "edited"


async def test_primary_limit_rejects_with_remaining_zero_until_the_reset_epoch(github_sandbox):
    """The 4th request of 3 per hour is a 403 with x-ratelimit-remaining 0; after reset, OK."""
    gh = await github_sandbox(primary_limit=3)
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        for left in (2, 1, 0):
            r = await fetch(http, "GET", gh.issues_url)
            assert r.status == 200 and r.headers["x-ratelimit-remaining"] == str(left)
        r = await fetch(http, "GET", gh.issues_url)
        assert r.status == 403 and r.headers["x-ratelimit-remaining"] == "0"
        reset = int(r.headers["x-ratelimit-reset"])
        assert reset > gh.clock.time()
        gh.clock.set(reset)
        r = await fetch(http, "GET", gh.issues_url)
        assert r.status == 200 and r.headers["x-ratelimit-used"] == "1"


async def test_secondary_limit_answers_retry_after(github_sandbox):
    """Over the per-minute budget a 429 carries retry-after; waiting that long clears it."""
    gh = await github_sandbox(secondary_per_minute=2, secondary_status=429)
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        assert (await fetch(http, "GET", gh.issues_url)).status == 200
        assert (await fetch(http, "GET", gh.issues_url)).status == 200
        r = await fetch(http, "GET", gh.issues_url)
        assert r.status == 429 and r.headers["retry-after"] == "60"
        assert int(r.headers["x-ratelimit-remaining"]) > 0
        gh.clock.advance(60)
        assert (await fetch(http, "GET", gh.issues_url)).status == 200


async def test_unknown_token_is_bad_credentials(github_sandbox):
    """A token the server never issued gets 401; no token at all too."""
    gh = await github_sandbox()
    async with aiohttp.ClientSession() as http:
        r = await fetch(http, "GET", gh.issues_url, headers={"Authorization": "Bearer nope"})
        assert r.status == 401 and r.json()["message"] == "Bad credentials"
        assert (await fetch(http, "GET", gh.issues_url)).status == 401


async def _device_tokens(http: aiohttp.ClientSession, gh: GithubHandle) -> dict:
    r = await fetch(
        http, "POST", gh.base_url + "/login/device/code", data={"client_id": DEMO_CLIENT_ID}
    )
    device = parse_qs(r.text)  # form-encoded unless JSON is asked for, as on GitHub
    code, user_code = device["device_code"][0], device["user_code"][0]
    poll = {"client_id": DEMO_CLIENT_ID, "device_code": code, "grant_type": DEVICE_GRANT}
    r = await fetch(http, "POST", gh.token_url, data=poll, headers=JSON)
    assert r.json()["error"] == "authorization_pending"
    r = await fetch(http, "POST", gh.token_url, data=poll, headers=JSON)
    assert r.json()["error"] == "slow_down" and r.json()["interval"] == 10
    approve = await fetch(
        http, "GET", device["verification_uri"][0], params={"user_code": user_code}
    )
    assert approve.status == 200
    r = await fetch(http, "POST", gh.token_url, data=poll, headers=JSON)
    tokens = r.json()
    assert tokens["expires_in"] == 8 * 3600 and tokens["refresh_token"].startswith("ghr_")
    r = await fetch(http, "POST", gh.token_url, data=poll, headers=JSON)
    assert r.json()["error"] == "bad_verification_code"  # a device code is spent once
    return tokens


async def test_device_flow_then_single_use_refresh_rotation(github_sandbox):
    """Refreshing spends the refresh token and revokes its access token; reuse is rejected."""
    gh = await github_sandbox()
    async with aiohttp.ClientSession() as http:
        first = await _device_tokens(http, gh)
        auth = {"Authorization": f"Bearer {first['access_token']}"}
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 200
        grant = {
            "client_id": DEMO_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
        }
        second = (await fetch(http, "POST", gh.token_url, data=grant, headers=JSON)).json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 401
        again = (await fetch(http, "POST", gh.token_url, data=grant, headers=JSON)).json()
        assert again["error"] == "bad_refresh_token"
        auth = {"Authorization": f"Bearer {second['access_token']}"}
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 200
        gh.clock.advance(8 * 3600)
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 401


async def test_tokens_expire_on_the_time_scaled_clock(github_sandbox):
    """At time scale 10 an 8-hour token lives 48 minutes; client credentials work too."""
    gh = await github_sandbox(time_scale=10)
    async with aiohttp.ClientSession() as http:
        grant = {
            "grant_type": "client_credentials",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        }
        tokens = (await fetch(http, "POST", gh.token_url, data=grant, headers=JSON)).json()
        assert tokens["expires_in"] == 2880 and "refresh_token" not in tokens
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        gh.clock.advance(2879)
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 200
        gh.clock.advance(1)
        assert (await fetch(http, "GET", gh.base_url + "/user", headers=auth)).status == 401


async def test_device_code_denied_and_expired_are_distinct_outcomes(github_sandbox):
    """A denied code answers access_denied; an unanswered one expired_token after 15 min."""
    gh = await github_sandbox()
    async with aiohttp.ClientSession(headers=JSON) as http:
        outcomes = []
        for deny in (True, False):
            body = {"client_id": DEMO_CLIENT_ID}
            d = (await fetch(http, "POST", gh.base_url + "/login/device/code", data=body)).json()
            if deny:
                await fetch(
                    http,
                    "GET",
                    d["verification_uri"],
                    params={"user_code": d["user_code"], "deny": "1"},
                )
            else:
                gh.clock.advance(d["expires_in"])
            poll = {**body, "device_code": d["device_code"], "grant_type": DEVICE_GRANT}
            outcomes.append((await fetch(http, "POST", gh.token_url, data=poll)).json()["error"])
    assert outcomes == ["access_denied", "expired_token"]


async def test_fault_knobs_break_data_requests(github_sandbox):
    """p_503=1 answers every issues request with a 503 HTML page; p_truncate cuts the JSON."""
    gh = await github_sandbox(p_503=1.0)
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        r = await fetch(http, "GET", gh.issues_url)
        assert r.status == 503 and "<html>" in r.text
        assert (await fetch(http, "GET", gh.base_url + "/user")).status == 200
    gh = await github_sandbox(p_truncate=1.0)
    async with aiohttp.ClientSession(headers=gh.headers) as http:
        r = await fetch(http, "GET", gh.issues_url)
        assert r.status == 200 and not r.text.endswith("]")


def test_the_data_is_a_function_of_the_seed():
    """Same seed, same issues and comments; another seed, other data."""

    def snapshot(seed: int) -> list[tuple[int, int, int]]:
        repo = Repository(GithubConfig(issues=80, seed=seed))
        return [(i.id, i.updated, len(i.comments)) for i in repo.issues.values()]

    assert snapshot(7) == snapshot(7) != snapshot(8)
