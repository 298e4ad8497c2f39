"""The source contract: what every source must do, whatever its API (issue 13).

Each ``Adapter`` drives one source against its sandbox on virtual time and answers the
same questions; ``tests/test_contract.py`` runs the same scenarios on all of them:

    datasync   the built-in Python source (etl ingest's wiring)
    github     the shipped declarative spec (etl sync's wiring)
    tiny       a spec that exists only here: OAuth2 client credentials, page numbers

Scenarios map onto each sandbox's own knobs: ``faults`` (5xx, truncated, dropped),
``throttled`` (429 + Retry-After), ``expiring`` (cursors or tokens that expire while the
run waits), ``malformed`` (records that cannot be loaded -> quarantine).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import aiohttp

from etl.clock import FakeClock
from etl.sandbox.github.data import malformed
from tests.ingest_harness import LinkedClock, Recorder, ingest, loaded_ids, query
from tests.rest_harness import Bridge, github_spec, rows, run, spec_here

SCENARIOS = ("faults", "throttled", "expiring", "malformed")


class Adapter(Protocol):
    name: str

    async def start(self, *scenarios: str) -> None: ...

    async def sync(self, stop_after: int | None = None) -> str: ...

    async def loaded(self) -> list[Any]: ...

    def every_key(self) -> set[Any]: ...

    def bad(self) -> int: ...

    async def quarantined(self) -> int: ...

    def refused(self) -> int:
        """Responses the server refused for rate limits (429/403)."""
        ...

    def renewed(self) -> int:
        """Under ``expiring``: how often what expires had to be renewed during the run (a
        token fetched again; DataSync: cursor lifetimes the run outlasted, its cursors
        being renewed before they are sent). 0: the scenario did not bite."""
        ...

    def faults(self) -> int:
        """Server faults (5xx, truncated, dropped) the sandbox served."""
        ...


class DataSync:
    name = "datasync"
    events = 3_000

    def __init__(self, sandbox: Any, db_url: str) -> None:
        self.factory, self.db_url = sandbox, db_url
        self.clock = FakeClock()
        self.knobs: dict[str, Any] = {}

    async def start(self, *scenarios: str) -> None:
        k: dict[str, Any] = {"events": self.events, "clock": LinkedClock(self.clock)}
        if "faults" in scenarios:
            k.update(p_500=0.05, p_503=0.05, p_truncate=0.05, p_drop=0.05)
        if "throttled" in scenarios or "expiring" in scenarios:
            k.update(rate_limit=2)
        if "expiring" in scenarios:
            k.update(cursor_ttl=20.0)
        if "malformed" in scenarios:
            k.update(invalid_events=0.01)
        self.knobs = k
        self.sb = await self.factory(**k)
        if "throttled" in scenarios:  # another client of the same key spent the window
            async with aiohttp.ClientSession(headers=self.sb.headers) as http:
                for _ in range(2):
                    async with http.get(self.sb.base_url + "/events", params={"limit": "1"}):
                        pass

    async def sync(self, stop_after: int | None = None) -> str:
        outcome = await ingest(
            self.sb.base_url,
            self.sb.api_key,
            self.db_url,
            self.clock,
            source={"strategy": "events"},
            # two requests in flight at most: 3,000 events are 6 pages, and the adaptive
            # limit would fetch them all before a stop after two commits could bite
            pipeline={"page_size": 500, "max_in_flight": 2},
            reporter=Recorder(stop_after_batches=stop_after),
        )
        return "partial" if outcome.status == "partial" else outcome.status

    async def loaded(self) -> list[Any]:
        return await loaded_ids(self.db_url)

    def every_key(self) -> set[Any]:
        return set(self.sb.ids())

    def bad(self) -> int:
        share = self.knobs.get("invalid_events", 0.0)
        return sum(1 for j in range(self.events) if self.sb.dataset.invalid(j, share))

    async def quarantined(self) -> int:
        return len(await query(self.db_url, "SELECT 1 FROM quarantine"))

    def refused(self) -> int:
        return sum(self.sb.stats.rate_limited.values())

    def renewed(self) -> int:
        return int(self.clock.now() // self.knobs.get("cursor_ttl", float("inf")))

    def faults(self) -> int:
        return sum(self.sb.stats.faults.values())


class _Spec:
    """What the two declarative adapters share (the GitHub sandbox, `etl sync`'s wiring)."""

    name = ""
    table = ""
    issues = 300

    def __init__(self, github_sandbox: Any, db_url: str) -> None:
        self.factory, self.db_url = github_sandbox, db_url
        self.share = 0.0

    def knobs(self, scenarios: tuple[str, ...]) -> dict[str, Any]:
        k: dict[str, Any] = {"issues": self.issues, "clock": Bridge(FakeClock())}
        if "faults" in scenarios:
            k.update(p_503=0.2, p_truncate=0.1, p_drop=0.1)
        if "throttled" in scenarios or "expiring" in scenarios:
            k.update(secondary_per_minute=1, secondary_status=429, primary_limit=3)
        if "expiring" in scenarios:
            k.update(access_token_ttl=90.0)
        if "malformed" in scenarios:
            self.share = 0.03
            k.update(malformed=self.share)
        return k

    def spec(self) -> Any:
        raise NotImplementedError

    async def spend(self, scenarios: tuple[str, ...]) -> None:
        """Under ``throttled`` another client of the same user spends the primary budget."""
        if "throttled" not in scenarios:
            return
        async with aiohttp.ClientSession(headers=self.gh.headers) as http:
            for _ in range(3):
                async with http.get(self.gh.base_url + "/user"):
                    pass

    async def sync(self, stop_after: int | None = None) -> str:
        pages = Counter[str]()

        def should_stop() -> bool:
            pages["n"] += 1
            return stop_after is not None and pages["n"] >= stop_after

        (result,) = await run(self.spec(), self.gh, self.db_url, should_stop=should_stop)
        return result.status

    async def loaded(self) -> list[Any]:
        return [r["id"] for r in await rows(self.db_url, f"SELECT id FROM {self.table}")]

    def every_key(self) -> set[Any]:
        return {i.id for i in self.gh.state.repo.issues.values()}

    def bad(self) -> int:
        seed = self.gh.config.seed
        return sum(1 for key in self.every_key() if malformed(seed, key, self.share))

    async def quarantined(self) -> int:
        return len(await rows(self.db_url, "SELECT 1 FROM stream_quarantine"))

    def refused(self) -> int:
        st = self.gh.state.stats.statuses
        return sum(n for (_, status), n in st.items() if status in (403, 429))

    def renewed(self) -> int:
        return self.gh.state.oauth.refreshes

    def faults(self) -> int:
        return sum(self.gh.state.stats.faults.values())


class GitHub(_Spec):
    name = "github"
    table = "github_issues"

    async def start(self, *scenarios: str) -> None:
        from tests.rest_harness import sign_in

        self.gh = await self.factory(**self.knobs(scenarios))
        await sign_in(self.gh, self.db_url)
        await self.spend(scenarios)

    def spec(self) -> Any:
        from dataclasses import replace

        spec = github_spec(self.gh)
        return replace(spec, streams=spec.streams[:1])


TINY = """
name: tiny
config:
  api: {env: API, required: true}
auth:
  type: oauth2_client_credentials
  token_url: ${api}/login/oauth/access_token
  client_id: Iv1.sandbox00000000
  client_secret: sandbox_client_secret_0000000000000000000
base_url: ${api}
streams:
  issues:
    path: /repos/sandbox-org/demo/issues
    params: {state: all, sort: created, direction: asc}
    paginator: {type: page_number, param: page, size_param: per_page, size: 40}
    primary_key: id
    columns:
      id: bigint
      title: text
      updated_at: {type: timestamp, nullable: false}
"""


class Tiny(_Spec):
    name = "tiny"
    table = "tiny_issues"

    async def start(self, *scenarios: str) -> None:
        self.gh = await self.factory(**self.knobs(scenarios))
        await self.spend(scenarios)

    def spec(self) -> Any:
        return spec_here(TINY, self.gh)

    def renewed(self) -> int:
        return self.gh.state.oauth.client_grants - 1  # the first token is not a renewal
