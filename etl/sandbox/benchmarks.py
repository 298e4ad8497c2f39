"""``GET /benchmarks/thresholds``: a benchmark service serving threshold rules (public).

The rules fit the sandbox's dataset (click-through ~0.71, conversion ~0.20, error share
~0.05), so a healthy dataset breaks none. The ``thresholds_fault`` knob makes it misbehave:
``down`` (503 with an HTML body, as a load balancer), ``garbage`` (200 with a body that is
not JSON), ``bad_rules`` (200 JSON that is not a rule list), ``slow`` (waits
``slow_seconds`` first).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from etl.sandbox import responses
from etl.sandbox.state import State

BENCHMARKS_PATH = "/benchmarks/thresholds"
FAULTS = ("none", "down", "garbage", "bad_rules", "slow")
RULES = {
    "rules": [
        {
            "name": "click-through",
            "metric": "ratio",
            "numerator": "click",
            "denominator": "page_view",
            "min": 0.5,
        },
        {
            "name": "conversion",
            "metric": "ratio",
            "numerator": "purchase",
            "denominator": "click",
            "min": 0.1,
        },
        {
            "name": "error share",
            "metric": "ratio",
            "numerator": "error",
            "denominator": "*",
            "max": 0.08,
        },
        {"name": "daily volume", "metric": "count", "numerator": "*", "min": 1},
    ]
}


async def serve(state: State) -> web.StreamResponse:
    fault = state.config.thresholds_fault
    if fault == "down":
        return responses.alb_error(503)
    if fault == "garbage":
        return web.Response(
            status=200, text="<html><body>maintenance</body></html>", content_type="text/html"
        )
    if fault == "bad_rules":
        return responses.json_response({"rules": "none today"}, rid=responses.request_id())
    if fault == "slow":
        await asyncio.sleep(state.config.slow_seconds)
    return responses.json_response(RULES, rid=responses.request_id())
