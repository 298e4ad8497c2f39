"""Request counts and latency histograms per route, in the Prometheus text format.

Routes are labelled by their pattern (``/events/{user_id}``), never the concrete path, so
the number of series stays bounded whatever clients ask for.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from etl.serve.envelope import Handler

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.35, 0.5, 1.0, 2.5, 5.0)


class Telemetry:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._hist: dict[tuple[str, str], list[int]] = {}
        self._sum: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        counts = self._hist.setdefault((method, route), [0] * (len(BUCKETS_S) + 1))
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1
        self._sum[(method, route)] += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data (what a worker shares with the others)."""
        return {
            "requests": [[*k, n] for k, n in self.requests.items()],
            "hist": [[*k, counts, self._sum[k]] for k, counts in self._hist.items()],
        }

    def merged(self, others: Iterable[dict[str, Any]]) -> Telemetry:
        """These counters plus other workers' snapshots (for one /metrics of the server)."""
        out = Telemetry(self._clock)
        for doc in [self.snapshot(), *others]:
            for method, route, status, n in doc["requests"]:
                out.requests[(method, route, int(status))] += n
            for method, route, counts, total in doc["hist"]:
                mine = out._hist.setdefault((method, route), [0] * (len(BUCKETS_S) + 1))
                out._hist[(method, route)] = [a + b for a, b in zip(mine, counts, strict=True)]
                out._sum[(method, route)] += total
        return out

    def render(self) -> str:
        lines = [
            "# HELP etl_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE etl_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(
                f'etl_http_requests_total{{method="{method}",route="{route}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP etl_http_request_duration_seconds Time to answer, by route.",
            "# TYPE etl_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self._hist.items()):
            labels = f'method="{method}",route="{route}"'
            for bound, n in zip(BUCKETS_S, counts, strict=False):
                lines.append(
                    f'etl_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}'
                )
            lines.append(
                f'etl_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]}'
            )
            lines.append(
                f"etl_http_request_duration_seconds_sum{{{labels}}} {self._sum[(method, route)]!r}"
            )
            lines.append(f"etl_http_request_duration_seconds_count{{{labels}}} {counts[-1]}")
        return "\n".join(lines) + "\n"

    def middleware(self) -> Callable[[web.Request, Handler], object]:
        @web.middleware
        async def telemetry_middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            t0 = self._clock()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                info = request.match_info.route.resource
                route = info.canonical if info is not None else "unmatched"
                self.observe(request.method, route, status, self._clock() - t0)

        return telemetry_middleware
