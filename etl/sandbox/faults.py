"""Injected faults, drawn from one RNG seeded with ``fault_seed`` (reproducible per run).

Per data request (``/events``, the feed, ``/sessions``, stream-access gets 5xx only), at most
one *exclusive* fault: ALB 500/502/503/504 (HTML, ``Server: awselb/2.0``), a truncated JSON
body (valid HTTP framing, JSON cut), or a dropped connection (headers and part of the body,
then the transport is closed). Independently: a slow response (``slow_seconds``) and
missing fields (one or two fields removed from ~1 % of the page's events, at least one; on
a page with no events the spec's ``Missing fields: none applicable``).
Express-level chaos is announced by ``X-Chaos-Applied`` / ``X-Chaos-Description``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from etl.sandbox.config import SandboxConfig

Exclusive = Literal["500", "502", "503", "504", "truncate", "drop"]
DROPPABLE_FIELDS = ("name", "properties", "session", "userId", "sessionId")


@dataclass(frozen=True, slots=True)
class Plan:
    exclusive: Exclusive | None = None
    slow: bool = False
    missing_fields: bool = False
    cut: float = 0.5  # where to cut a truncated / dropped body (fraction)

    @property
    def any(self) -> bool:
        return self.exclusive is not None or self.slow or self.missing_fields


NO_FAULT = Plan()


class Faults:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.enabled = config.faults_enabled
        self.rng = random.Random(config.fault_seed)

    def plan(self, *, body_faults: bool = True) -> Plan:
        if not self.enabled:
            return NO_FAULT
        c, r = self.config, self.rng
        u = r.random()
        exclusive: Exclusive | None = None
        options: tuple[tuple[Exclusive, float], ...] = (
            ("500", c.p_500),
            ("502", c.p_502),
            ("503", c.p_503),
            ("504", c.p_504),
            ("truncate", c.p_truncate if body_faults else 0.0),
            ("drop", c.p_drop if body_faults else 0.0),
        )
        acc = 0.0
        for kind, p in options:
            acc += p
            if u < acc:
                exclusive = kind
                break
        slow = r.random() < c.p_slow
        missing = body_faults and r.random() < c.p_missing_fields
        return Plan(exclusive, slow, missing, cut=0.05 + 0.9 * r.random())

    def victims(self, n: int) -> list[tuple[int, tuple[str, ...]]]:
        """(index in page, fields to drop: one or two) for a missing-fields page of ``n``
        events: ~1 % of them, at least one."""
        if n == 0:
            return []
        k = max(1, n // 100)
        picks = sorted(self.rng.sample(range(n), k))
        return [
            (i, tuple(self.rng.sample(DROPPABLE_FIELDS, self.rng.choice((1, 2))))) for i in picks
        ]

    async def slow(self) -> None:
        await asyncio.sleep(self.config.scaled(self.config.slow_seconds))


def truncate(resp: web.Response, cut: float) -> web.Response:
    """The same response with its JSON body cut short (Content-Length matches the cut body)."""
    body = resp.body
    assert isinstance(body, bytes)
    cut_at = max(1, min(len(body) - 1, int(len(body) * cut)))
    headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
    headers["X-Chaos-Applied"] = "truncatedBody"
    headers["X-Chaos-Description"] = f"Body truncated at byte {cut_at}"
    return web.Response(body=body[:cut_at], status=resp.status, headers=headers)


async def drop(request: web.Request, resp: web.Response, cut: float) -> web.StreamResponse:
    """Send the headers and part of the body, then close the connection."""
    body = resp.body
    assert isinstance(body, bytes)
    stream = web.StreamResponse(status=resp.status)
    for k, v in resp.headers.items():
        if k.lower() not in ("content-length", "content-type"):
            stream.headers[k] = v
    stream.content_type = "application/json"
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: max(1, int(len(body) * cut))])
    transport = request.transport
    if transport is not None:
        transport.abort()
    return stream
