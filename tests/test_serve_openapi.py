"""The OpenAPI document stays true: every route documented, every documented route served,
every status the server answered in the other serve tests documented for its route."""

from __future__ import annotations

from etl.pg import RecoveringPool
from etl.serve.app import CTX, ServeContext, make_app
from etl.serve.openapi import document
from tests.serve_harness import ClientFactory, event


def _routes() -> set[tuple[str, str]]:
    app = make_app(ServeContext(db=RecoveringPool("postgresql://127.0.0.1:9/none")))
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        out.add((route.method.lower(), route.resource.canonical if route.resource else ""))
    return out


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    """The router and the document list the same (method, path) pairs."""
    doc = document()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _routes()
    assert doc["openapi"] == "3.1.0"


def test_every_ref_resolves() -> None:
    """Every $ref points at a schema that exists."""
    doc = document()
    schemas = doc["components"]["schemas"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.removeprefix("#/components/schemas/") in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)


async def test_statuses_answered_are_documented(serve_client: ClientFactory) -> None:
    """Drive each route through its success and failure answers; every (route, status) the
    server's own telemetry saw is in the document's responses for that route."""
    client = await serve_client(client_api_key="k", max_events_per_request=2)
    key = {"X-API-Key": "k"}
    ev, gone = event(), event(type_="gone")
    for method, path, kwargs in [
        ("GET", "/", {}),
        ("GET", "/health", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/status", {"headers": key}),
        ("GET", "/status", {}),
        ("GET", "/metrics", {"headers": key}),
        ("POST", "/events", {"headers": key, "json": ev}),
        ("POST", "/events", {"headers": key, "json": ev}),
        ("POST", "/events", {"headers": key, "json": {**event(), "id": "x"}}),
        ("POST", "/events", {"headers": key, "json": [event(), event(), event()]}),
        ("POST", "/events", {"headers": {**key, "Content-Type": "text/plain"}, "data": b"x"}),
        ("GET", f"/events/{ev['userId']}", {"headers": key}),
        ("GET", "/events/nope", {"headers": key}),
        ("GET", "/series", {"headers": key}),
        ("GET", "/series?bucket=week", {"headers": key}),
        ("GET", "/series/count", {"headers": key}),
        ("GET", "/series/page_view", {"headers": key}),
        ("GET", "/series/page_view/stats", {"headers": key}),
        ("GET", "/series/page_view/forecast?h=3", {"headers": key}),
        ("DELETE", "/series/page_view?dry_run=true", {"headers": key}),
        ("DELETE", "/series/page_view?dry_run=maybe", {"headers": key}),
        ("GET", "/top/users", {"headers": key}),
        ("GET", "/top/moons", {"headers": key}),
        ("GET", "/anomalies", {"headers": key}),
        ("POST", "/anomalies/runs", {"headers": key}),
        ("POST", "/anomalies/runs?bucket=week", {"headers": key}),
        ("DELETE", "/series/gone", {"headers": key}),
        ("POST", "/events", {"headers": key, "json": gone}),
        ("POST", "/events", {"headers": key, "json": gone}),
    ]:
        await client.request(method, path, **kwargs)
    seen = client.server.app[CTX].telemetry.requests
    paths = document()["paths"]
    statuses = {(m.lower(), r, str(s)) for (m, r, s) in seen}
    assert {s for _, _, s in statuses} >= {"200", "201", "400", "401", "409", "413", "415", "422"}
    for method, route, status in statuses:
        assert status in paths[route][method]["responses"], (method, route, status)
