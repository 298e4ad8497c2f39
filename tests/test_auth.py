"""Client auth against the sandbox's OAuth endpoints, tokens kept in a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from etl.auth import device
from etl.auth.oauth2 import ClientCredentials, RotatingRefresh, TokenEndpoint
from etl.auth.schemes import ApiKey, Bearer
from etl.auth.tokens import TokenSet
from etl.errors import AuthError, ExitCode, SinkError
from etl.sandbox.github import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from etl.sink.tokens import PgTokenStore
from etl.source.http import Http
from tests.fixtures_github import GithubHandle


async def _status(http: Http, gh: GithubHandle, headers: dict[str, str]) -> int:
    return (await http.request("GET", gh.base_url + "/user", headers=headers)).status


def _rotating(http: Http, gh: GithubHandle, store: PgTokenStore, **kw: object) -> RotatingRefresh:
    endpoint = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return RotatingRefresh(endpoint, store, "github", wall=gh.clock.time, **kw)  # type: ignore[arg-type]


async def _signed_in(gh: GithubHandle, store: PgTokenStore) -> TokenSet:
    """What `etl auth github` leaves behind: a token set from the device flow, stored."""
    tokens = TokenSet.from_response(gh.state.oauth.issue(gh.clock.time()), gh.clock.time(), "t")
    await store.save("github", tokens)
    return tokens


async def test_an_expired_token_is_refreshed_and_the_new_refresh_token_stored(
    github_sandbox, db_url
):
    """After 8 h the next request refreshes; the stored refresh token is the new one, the
    spent one is refused by the server, and the new access token is accepted."""
    gh = await github_sandbox()
    store = PgTokenStore(db_url)
    first = await _signed_in(gh, store)
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, store)
        headers: dict[str, str] = {}
        await auth.apply(headers, {})
        assert headers["Authorization"] == f"Bearer {first.access_token}"
        assert gh.state.oauth.refreshes == 0
        gh.clock.advance(8 * 3600)
        await auth.apply(headers, {})
        stored = await PgTokenStore(db_url).load("github")
        assert stored is not None and stored.refresh_token != first.refresh_token
        assert headers["Authorization"] == f"Bearer {stored.access_token}"
        assert await _status(http, gh, headers) == 200
        assert first.refresh_token not in gh.state.oauth.refresh
        assert gh.state.oauth.refreshes == 1


async def test_concurrent_requests_share_one_refresh(github_sandbox, db_url):
    """Twenty requests meeting an expired token cause exactly one refresh grant."""
    gh = await github_sandbox()
    store = PgTokenStore(db_url)
    await _signed_in(gh, store)
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, store)
        gh.clock.advance(8 * 3600)
        heads: list[dict[str, str]] = [{} for _ in range(20)]
        await asyncio.gather(*(auth.apply(h, {}) for h in heads))
    assert gh.state.oauth.refreshes == 1
    assert len({h["Authorization"] for h in heads}) == 1


async def test_a_token_that_cannot_be_stored_is_never_used(github_sandbox, db_url):
    """When PostgreSQL refuses to store the rotated tokens, the run stops (exit 6) before
    the new access token is sent anywhere."""
    gh = await github_sandbox()
    store = PgTokenStore(db_url)
    await _signed_in(gh, store)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'disk full'; END$$;"
            "CREATE TRIGGER no_writes BEFORE UPDATE ON source_tokens "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    finally:
        await conn.close()
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, store)
        gh.clock.advance(8 * 3600)
        headers: dict[str, str] = {}
        with pytest.raises(SinkError) as err:
            await auth.apply(headers, {})
    assert err.value.exit_code == ExitCode.DATABASE
    assert headers == {}
    assert gh.state.oauth.refreshes == 1


async def test_a_rejected_refresh_says_to_sign_in_again_and_leaks_nothing(github_sandbox, db_url):
    """A refresh token the server no longer knows: exit 4, `etl auth github`, no token text."""
    gh = await github_sandbox()
    store = PgTokenStore(db_url)
    await store.save("github", TokenSet("ghu_old", 0.0, "ghr_spent_long_ago", None))
    async with Http(gh.base_url, "") as http:
        with pytest.raises(AuthError) as err:
            await _rotating(http, gh, store).apply({}, {})
    assert err.value.exit_code == ExitCode.AUTH
    assert "etl auth github" in str(err.value)
    assert "ghr_spent_long_ago" not in str(err.value) and "ghu_old" not in str(err.value)


async def test_no_stored_tokens_and_none_given_asks_to_sign_in(github_sandbox, db_url):
    """A first run without `etl auth`: exit 4 naming the command, before any API request."""
    gh = await github_sandbox()
    async with Http(gh.base_url, "") as http:
        with pytest.raises(AuthError, match="etl auth github"):
            await _rotating(http, gh, PgTokenStore(db_url)).apply({}, {})
    assert sum(gh.state.stats.requests.values()) == 0


async def test_a_configured_refresh_token_seeds_the_store_once(github_sandbox, db_url):
    """A refresh token given in the config is used when the store is empty; the rotated one
    is stored, so the next run does not reuse the spent one from the config."""
    gh = await github_sandbox()
    seed = gh.state.oauth.issue(gh.clock.time())["refresh_token"]
    store = PgTokenStore(db_url)
    async with Http(gh.base_url, "") as http:
        await _rotating(http, gh, store, initial_refresh_token=seed).apply({}, {})
        headers: dict[str, str] = {}
        await _rotating(http, gh, store, initial_refresh_token=seed).apply(headers, {})
        assert await _status(http, gh, headers) == 200
    assert gh.state.oauth.refreshes == 1


async def test_a_401_renews_the_token_before_the_next_request(github_sandbox, db_url):
    """The server revoked the access token early: after renew() the next request refreshes."""
    gh = await github_sandbox()
    store = PgTokenStore(db_url)
    first = await _signed_in(gh, store)
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, store)
        gh.state.oauth.access.pop(first.access_token)
        headers: dict[str, str] = {}
        await auth.apply(headers, {})
        assert await _status(http, gh, headers) == 401
        assert await auth.renew()
        await auth.apply(headers, {})
        assert await _status(http, gh, headers) == 200


async def test_client_credentials_fetch_a_token_and_fetch_again_after_expiry(github_sandbox):
    """The app's own token is fetched on first use and again once it expired."""
    gh = await github_sandbox()
    async with Http(gh.base_url, "") as http:
        endpoint = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        auth = ClientCredentials(endpoint, scope=None, wall=gh.clock.time)
        headers: dict[str, str] = {}
        await auth.apply(headers, {})
        assert await _status(http, gh, headers) == 200
        gh.clock.advance(8 * 3600)
        await auth.apply(headers, {})
        assert await _status(http, gh, headers) == 200
        wrong = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID, "not-the-secret")
        with pytest.raises(AuthError):
            await ClientCredentials(wrong, scope=None, wall=gh.clock.time).apply({}, {})


async def test_device_flow_waits_through_pending_and_slow_down(github_sandbox):
    """Polling at the server's interval until approval; a slow_down lengthens the interval."""
    gh = await github_sandbox(device_auto_approve=30)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        gh.clock.advance(seconds)

    async with Http(gh.base_url, "") as http:
        endpoint = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID)
        code = await device.start(endpoint, gh.base_url + "/login/device/code", None)
        assert code.user_code and code.interval == 5
        stray = gh.clock.time() + 1  # another poll 4 s before ours: too soon
        gh.state.oauth.devices[code.device_code].last_poll = stray
        tokens = await device.poll(endpoint, code, sleep=sleep, wall=gh.clock.time)
        assert await _status(http, gh, {"Authorization": f"Bearer {tokens.access_token}"}) == 200
    assert waits[0] == 5 and 10 in waits  # slowed down once, by 5 s
    assert tokens.refresh_token is not None


async def test_device_flow_denied_is_an_auth_error(github_sandbox):
    """A person who clicks "deny" ends the flow with exit 4 and a sentence saying so."""
    gh = await github_sandbox()
    async with Http(gh.base_url, "") as http:
        endpoint = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID)
        code = await device.start(endpoint, gh.base_url + "/login/device/code", None)
        gh.state.oauth.decide(code.user_code, approve=False)

        async def sleep(seconds: float) -> None:
            gh.clock.advance(seconds)

        with pytest.raises(AuthError, match="denied"):
            await device.poll(endpoint, code, sleep=sleep, wall=gh.clock.time)


async def test_static_schemes_place_the_secret_and_never_print_it():
    """A key goes in the named header or query parameter; repr shows neither key nor token."""
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    await ApiKey("k-123", name="api_key", location="query").apply(headers, params)
    await Bearer("t-456", scheme="token").apply(headers, params)
    assert params == {"api_key": "k-123"} and headers == {"Authorization": "token t-456"}
    shown = repr(ApiKey("k-123")) + repr(Bearer("t-456")) + repr(TokenSet("a-1", 1.0, "r-2"))
    assert not any(s in shown for s in ("k-123", "t-456", "a-1", "r-2"))
