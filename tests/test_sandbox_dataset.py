"""The dataset: deterministic, proportions, consistent sessions, ties; live events; config."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections import Counter, defaultdict

import aiohttp
import pytest

from etl.errors import ConfigError
from etl.sandbox import SandboxConfig
from etl.sandbox.config import REAL_NEWEST_TS_MS
from etl.sandbox.dataset import Dataset
from tests.fixtures_sandbox import SandboxFactory, fetch


def test_deterministic_from_seed() -> None:
    """The dataset is a function of its seed: the same seed gives the same events, another seed
    other ids."""
    a = Dataset(SandboxConfig(events=5000, seed=1))
    b = Dataset(SandboxConfig(events=5000, seed=1))
    c = Dataset(SandboxConfig(events=5000, seed=2))
    assert a.ids() == b.ids() and a.timestamps() == b.timestamps()
    assert a.event(42) == b.event(42)
    assert not set(a.ids()) & set(c.ids())


def test_shape_of_the_default_dataset_at_small_scale() -> None:
    """The generated data has the real dataset's shape: newest timestamp, a month of span, about
    0.1 % timestamp ties, the type mix."""
    ds = Dataset(SandboxConfig(events=60_000))
    ts = ds.timestamps()
    assert ts[0] == REAL_NEWEST_TS_MS
    assert 29 < (ts[0] - ts[-1]) / 86_400_000 < 31
    ties = sum(1 for x, y in itertools.pairwise(ts) if x == y)
    assert 20 <= ties <= 110  # about 0.1 % of neighbours
    events = [ds.event(p) for p in range(ds.size)]
    types = Counter(e["type"] for e in events)
    shares = {t: n / ds.size for t, n in types.items()}
    for name, share in {"page_view": 0.35, "click": 0.25, "api_call": 0.10, "scroll": 0.05}.items():
        assert abs(shares[name] - share) < 0.015
    assert ds.users == 60 and ds.static_sessions == 1200
    sessions: dict[object, list[dict[str, object]]] = defaultdict(list)
    for e in events:
        sessions[e["sessionId"]].append(e)
        assert re.fullmatch(r"event_[0-9a-z]{6}", str(e["name"]))
    assert len(sessions) == 1200
    for evs in sessions.values():
        assert len({(e["userId"], json.dumps(e["session"])) for e in evs}) == 1
        assert 25 <= len(evs) <= 90


def test_sessions_fit_an_hour_at_the_real_density() -> None:
    """A session's events stay within about an hour, as at the real data's density."""
    ds = Dataset(SandboxConfig(events=40_000, span_days=30 * 40_000 / 3_000_000))
    spans: dict[int, list[int]] = defaultdict(list)
    for p in range(ds.size):
        spans[ds.session_index(p)].append(ds.ts_at(p))
    assert max(max(v) - min(v) for v in spans.values()) <= 75 * 60_000


def test_lookup_maps_every_id_back() -> None:
    """Every id maps back to its position; unknown or malformed ids map to nothing."""
    ds = Dataset(SandboxConfig(events=3000))
    for p, event_id in enumerate(ds.ids()):
        assert ds.lookup(event_id) == p
    assert ds.lookup("00000000-0000-4000-8000-000000000000") is None
    assert ds.lookup("nope") is None


async def test_live_events_appear_at_the_head(sandbox: SandboxFactory) -> None:
    """With --live-rate, new events appear above the newest static one as time passes and the total
    grows."""
    sb = await sandbox(live_rate=10.0, unlimited=True)
    start_ms = round(sb.clock.time() * 1000)
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        first = (await fetch(http, "GET", sb.base_url + "/events", params={"limit": "5"})).json()
        newest_static = sb.dataset.newest_ts
        sb.clock.advance(3)
        later = (await fetch(http, "GET", sb.base_url + "/events", params={"limit": "50"})).json()
    assert first["meta"]["total"] == 20_001
    assert later["meta"]["total"] == 20_031
    live_ids = sb.ids()[:31]
    assert [e["id"] for e in later["data"][:31]] == live_ids
    assert later["data"][31]["id"] == sb.dataset.ids()[0]
    newest = sb.dataset.ts_at(0, 31)
    assert newest == start_ms + 3000 and newest > newest_static
    cursor = base64.b64encode(
        json.dumps({"id": live_ids[0], "ts": newest, "v": 2, "exp": 2**42}).encode()
    ).decode()
    async with aiohttp.ClientSession(headers=sb.headers) as http:
        r = await fetch(
            http, "GET", sb.base_url + "/events", params={"cursor": cursor, "limit": "2"}
        )
        event = await fetch(http, "GET", f"{sb.base_url}/events/{live_ids[5]}")
    assert [e["id"] for e in r.json()["data"]] == live_ids[1:3]
    assert event.status == 200 and event.json()["data"]["timestamp"] == sb.dataset.ts_at(5, 31)


@pytest.mark.parametrize(
    "changes",
    [
        {"events": 0},
        {"p_500": 1.5},
        {"p_500": 0.6, "p_502": 0.6},
        {"window": 0},
        {"time_scale": -1},
        {"api_keys": ("has space",)},
        {"timestamp_formats": "weird"},
        {"live_rate": 5000},
    ],
)
def test_bad_config_is_a_config_error(changes: dict[str, object]) -> None:
    """An invalid sandbox setting raises ConfigError (exit 2), never a traceback."""
    with pytest.raises(ConfigError):
        SandboxConfig(**changes)  # type: ignore[arg-type]
