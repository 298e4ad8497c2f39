"""The dashboard in a real browser (headless Chromium) against a real server and database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.browser import dump_dom, screenshot
from tests.serve_harness import ClientFactory, event


async def test_dashboard_draws_progress_and_runs(
    serve_client: ClientFactory, tmp_path: Path
) -> None:
    """Chromium loads / and finds the progress bar with the loaded count and the runs table;
    a screenshot is saved with the test's output."""
    client = await serve_client()
    for _ in range(3):
        assert (await client.post("/events", json=[event(), event()])).status == 201
    url = str(client.make_url("/"))
    dom = await asyncio.to_thread(dump_dom, url, tmp_path / "profile")
    assert 'data-chart="progress"' in dom
    assert re.search(r'id="run-state">[^<]*no run yet', dom)
    assert 'data-chart="events per hour by type"' in dom
    shot = await asyncio.to_thread(
        screenshot, url, tmp_path / "dashboard.png", tmp_path / "profile2"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
