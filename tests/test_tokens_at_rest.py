"""OAuth2 tokens sealed at rest: `SELECT * FROM source_tokens` shows no token, a rotated
token survives a crash, rows stored in clear by older versions are sealed on first use,
and a key that is missing, malformed or another one stops with exit 2 and what to do.

Real PostgreSQL, the sandbox's GitHub OAuth endpoints, real `etl` processes. The session's
key file lives in the tests' own XDG_CONFIG_HOME (conftest.py).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from etl.auth.oauth2 import RotatingRefresh, TokenEndpoint
from etl.auth.sealing import SecretKey
from etl.auth.tokens import TokenSet
from etl.errors import ConfigError, ExitCode
from etl.sandbox import SystemClock
from etl.sandbox.github import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from etl.sink.tokens import DDL, PgTokenStore
from etl.source.http import Http
from tests.fixtures_github import GithubHandle
from tests.rest_harness import expected_issues, loaded_issues, rows, sign_in
from tests.test_cli_ingest import env_for, etl, run_etl


async def table_text(db_url: str) -> str:
    """Everything `SELECT * FROM source_tokens` shows a person, as one string."""
    return "\n".join(r["t"] for r in await rows(db_url, "SELECT t::text AS t FROM source_tokens t"))


def issued(gh: GithubHandle) -> list[str]:
    """Every access and refresh token the sandbox ever issued (and still knows)."""
    return [
        t for t in (*gh.state.oauth.access, *gh.state.oauth.refresh) if t[:4] in ("ghu_", "ghr_")
    ]


def assert_no_token(text: str, gh: GithubHandle, *also: str | None) -> None:
    tokens = [*issued(gh), *(t for t in also if t)]
    assert tokens and not [t for t in tokens if t in text]


def session_key() -> str:
    """The key in the session's key file (made by the first sign-in)."""
    return Path(SecretKey().where()).read_text().strip()


def _env(gh: GithubHandle, db_url: str, **extra: str) -> dict[str, str]:
    return env_for(
        GITHUB_API_URL=gh.base_url,
        GITHUB_OAUTH_URL=gh.base_url + "/login",
        DATABASE_URL=db_url,
        **extra,
    )


def _rotating(http: Http, gh: GithubHandle, store: PgTokenStore) -> RotatingRefresh:
    endpoint = TokenEndpoint(http, gh.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return RotatingRefresh(endpoint, store, "github", wall=gh.clock.time)


async def test_the_table_holds_no_token_after_sign_in_and_rotation(github_sandbox, db_url):
    """After signing in and after a rotation the row shows no access or refresh token
    (only `fernet:` ciphertext and the expiry times), and the tokens still work."""
    gh = await github_sandbox()
    first = await sign_in(gh, db_url)
    text = await table_text(db_url)
    assert_no_token(text, gh, first.access_token, first.refresh_token)
    assert "fernet:" in text
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, PgTokenStore(db_url))
        gh.clock.advance(8 * 3600)
        headers: dict[str, str] = {}
        await auth.apply(headers, {})
        assert gh.state.oauth.refreshes == 1
        got = await http.request("GET", gh.base_url + "/user", headers=headers)
        assert got.status == 200
    assert_no_token(await table_text(db_url), gh, first.refresh_token)


async def test_a_rotated_token_survives_a_crash_right_after_it_is_stored(github_sandbox, db_url):
    """A real `etl sync` whose stored access token has expired refreshes first; SIGKILL as
    soon as the rotated (sealed) tokens are committed; the rerun opens them, loads every
    issue once, and no sign-in is needed: the spent refresh token was never needed again."""
    gh = await github_sandbox(clock=SystemClock(), issues=1500, latency=0.2)
    now = gh.clock.time()
    body = gh.state.oauth.issue(now, from_device=True)
    stale = TokenSet(body["access_token"], now - 1, body["refresh_token"], now + 86400)
    await PgTokenStore(db_url).save("github", stale)
    before = await table_text(db_url)
    proc = await etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
    for _ in range(1200):  # poll across processes: no event to wait on
        if await table_text(db_url) != before or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert proc.returncode is None, "the sync ended before it was killed"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert gh.state.oauth.refreshes == 1 and body["refresh_token"] not in gh.state.oauth.refresh
    code, out = await run_etl("sync", "github", "--stream", "issues", env=_env(gh, db_url))
    assert code == 0, out
    assert await loaded_issues(db_url) == expected_issues(gh)
    assert_no_token(await table_text(db_url) + out, gh, body["refresh_token"])
    stored = await PgTokenStore(db_url).load("github")
    assert stored is not None and stored.refresh_token in gh.state.oauth.refresh


async def test_tokens_stored_in_clear_by_an_older_version_are_sealed_on_first_use(
    github_sandbox, db_url
):
    """A row written in clear (as before sealing) is used as it is, sealed on first load,
    and its refresh token still rotates afterwards."""
    gh = await github_sandbox()
    body = gh.state.oauth.issue(gh.clock.time(), from_device=True)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(DDL)
        await conn.execute(
            "INSERT INTO source_tokens (source, access_token, expires_at, refresh_token) "
            "VALUES ('github', $1, to_timestamp($2), $3)",
            body["access_token"],
            gh.clock.time() + body["expires_in"],
            body["refresh_token"],
        )
    finally:
        await conn.close()
    async with Http(gh.base_url, "") as http:
        auth = _rotating(http, gh, PgTokenStore(db_url))
        headers: dict[str, str] = {}
        await auth.apply(headers, {})
        assert headers["Authorization"] == f"Bearer {body['access_token']}"
        assert_no_token(await table_text(db_url), gh)
        gh.clock.advance(8 * 3600)
        fresh = _rotating(http, gh, PgTokenStore(db_url))  # another run, after 8 h
        await fresh.apply(headers, {})
        got = await http.request("GET", gh.base_url + "/user", headers=headers)
        assert got.status == 200 and gh.state.oauth.refreshes == 1
    assert_no_token(await table_text(db_url), gh, body["refresh_token"])


async def test_a_wrong_missing_or_malformed_key_exits_2_saying_what_to_do(
    github_sandbox, db_url, tmp_path: Path
):
    """Tokens sealed with the session's key; `etl check` with another key, with no key
    at all, or with a key that is not one: exit 2, no traceback, no token or key in the
    output; given the old key after a new one (rotation), it works and re-seals the row."""
    gh = await github_sandbox(clock=SystemClock())
    tokens = await sign_in(gh, db_url)
    other = Fernet.generate_key().decode()
    cases = [
        ({"ETL_SECRET_KEY": other}, "sealed with another key than the one in ETL_SECRET_KEY"),
        ({"XDG_CONFIG_HOME": str(tmp_path)}, f"there is no key at {tmp_path}/etl/secret.key"),
        ({"ETL_SECRET_KEY": "hunter2"}, "ETL_SECRET_KEY is not a Fernet key"),
    ]
    for extra, said in cases:
        code, out = await run_etl("check", "github", env=_env(gh, db_url, **extra))
        assert code == ExitCode.CONFIG, out
        assert said in out and ("etl auth github" in out or "Fernet.generate_key" in out)
        assert "Traceback" not in out and "hunter2" not in out and other not in out
        assert_no_token(out, gh, tokens.access_token, tokens.refresh_token)
    assert not (tmp_path / "etl").exists()  # no key is made while sealed rows need one
    old = session_key()
    rotated = {"ETL_SECRET_KEY": f"{other},{old}"}
    code, out = await run_etl("check", "github", env=_env(gh, db_url, **rotated))
    assert code == 0, out
    new_only = PgTokenStore(db_url, key=SecretKey({"ETL_SECRET_KEY": other}))
    again = await new_only.load("github")  # sealed again with the new key
    assert again is not None and again.refresh_token == tokens.refresh_token


async def test_the_key_file_is_made_private_and_refused_when_others_can_read_it(
    db_url, tmp_path: Path
):
    """No ETL_SECRET_KEY: the first save makes $XDG_CONFIG_HOME/etl/secret.key, mode 0600
    in a 0700 directory; a key file others can read is refused with the chmod to run."""
    key = SecretKey({"XDG_CONFIG_HOME": str(tmp_path)})
    store = PgTokenStore(db_url, key=key)
    await store.save("api", TokenSet("a-secret", None, "r-secret", None))
    path = tmp_path / "etl" / "secret.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    again = PgTokenStore(db_url, key=SecretKey({"XDG_CONFIG_HOME": str(tmp_path)}))
    assert await again.load("api") == TokenSet("a-secret", None, "r-secret", None)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}") as err:
        await PgTokenStore(db_url, key=SecretKey({"XDG_CONFIG_HOME": str(tmp_path)})).load("api")
    assert err.value.exit_code == ExitCode.CONFIG
    assert "a-secret" not in str(err.value) and "r-secret" not in str(err.value)


async def test_a_sync_with_another_key_fails_the_stream_and_leaks_nothing(github_sandbox, db_url):
    """`etl sync` with a key that is not the one the tokens were sealed with: exit 2, the
    stream marked failed with the sentence; its output, `etl status --json`, `etl health`
    and the stream_state row show neither a token nor either key."""
    gh = await github_sandbox(clock=SystemClock())
    tokens = await sign_in(gh, db_url)
    other = Fernet.generate_key().decode()
    env = _env(gh, db_url, ETL_SECRET_KEY=other)
    code, out = await run_etl("sync", "github", "--stream", "issues", env=env)
    assert code == ExitCode.CONFIG and "Traceback" not in out, out
    assert "sealed with another key" in out and "etl auth github" in out
    (state,) = await rows(db_url, "SELECT status, last_error FROM stream_state")
    assert state["status"] == "failed" and "sealed with another key" in state["last_error"]
    seen = out + state["last_error"] + await table_text(db_url)
    for command in (("status", "--json"), ("health",), ("runs", "--json")):
        seen += (await run_etl(*command, env=env))[1]
    assert other not in seen and session_key() not in seen
    assert_no_token(seen, gh, tokens.access_token, tokens.refresh_token)
