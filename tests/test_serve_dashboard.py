"""The dashboard in a real browser (headless Chromium) against a real server and database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.browser import dump_dom, screenshot
from tests.serve_harness import ALICE, BOB, ClientFactory, event, seed


async def test_dashboard_on_a_fresh_database(serve_client: ClientFactory, tmp_path: Path) -> None:
    """With nothing loaded the page still draws: an empty progress track, 'no run yet', an
    empty volume chart that says so, no users, no runs."""
    client = await serve_client()
    dom = await asyncio.to_thread(dump_dom, str(client.make_url("/")), tmp_path / "p")
    assert 'data-chart="progress"' in dom
    assert re.search(r'id="run-state">[^<]*no run yet', dom)
    assert "data-empty" in dom and "no users yet" in dom and "no runs yet" in dom


async def test_dashboard_draws_volumes_forecast_anomalies_and_top_users(
    serve_client: ClientFactory, tmp_path: Path
) -> None:
    """Chromium loads / over three days of events: one line per type, the forecast band, the
    anomalies the last stored check found marked on their series, the top users as bars; a
    screenshot is saved with the test's output."""
    client = await serve_client()
    await seed(client)
    assert (await client.post("/events", json=event(type_="error", ts="2026-11-03T23:10:00Z"))).ok
    report = await (  # stored, so the dashboard marks it
        await client.post("/anomalies/runs", params={"training_days": "1", "detection_days": "1"})
    ).json()
    url = str(client.make_url("/"))
    dom = await asyncio.to_thread(dump_dom, url, tmp_path / "p")
    for name in ("page_view", "click", "purchase", "all"):
        assert f'data-series="{name}"' in dom, name
    assert 'data-band="all"' in dom and 'data-forecast="all"' in dom
    drawn = re.findall(r'data-anomaly="([^"]+)"', dom)
    assert sorted(drawn) == sorted(a["series"] for a in report["anomalies"])
    bars = re.findall(r'data-bar="([^"]+)" data-value="([^"]+)"', dom)
    assert bars[:2] == [(BOB, "75"), (ALICE, "72")]
    shot = await asyncio.to_thread(screenshot, url, tmp_path / "dashboard.png", tmp_path / "p2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
