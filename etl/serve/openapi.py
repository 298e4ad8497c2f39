"""The OpenAPI 3.1 document of `etl serve`, served at ``/openapi.json``.

Kept true by tests/test_serve_openapi.py: every route of the app is documented with the
statuses it can answer, and every documented route exists.
"""

from __future__ import annotations

from typing import Any

from etl import __version__
from etl.serve.openapi_schemas import SCHEMAS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_AUTH_401 = {"401": _err("missing or wrong API key (when the server requires one)")}
_DB_503 = {"503": _err("the database is unavailable; retry later")}
_TS = {"type": "string", "format": "date-time"}
_TYPE_P = {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}}
_SERIES_Q = [
    _q("bucket", {"enum": ["hour", "day"]}, "bucket width (UTC)"),
    _q("since", _TS, "inclusive"),
    _q("until", _TS, "exclusive"),
]
_SERIES_RESP = {
    "200": _json({"type": "object"}, "buckets and values"),
    "400": _err("bad parameter"),
    **_AUTH_401,
    **_DB_503,
}

_ANOMALY_Q = [
    _q("bucket", {"enum": ["hour", "day"]}, "bucket width"),
    _q("type", {"type": "string"}, "repeatable"),
    _q("until", _TS, "end of the detection window"),
    _q("training_days", {"type": "integer"}, "default 14"),
    _q("detection_days", {"type": "integer"}, "default 2"),
    _q("sensitivity", {"type": "integer"}, "z-score, default 3"),
    _q("min_training_points", {"type": "integer"}, "default 7"),
]
_ANOMALY_ERRORS = {
    "400": _err("bad parameter"),
    **_AUTH_401,
    "502": _err("the thresholds service failed"),
    **_DB_503,
}

PATHS: dict[str, dict[str, Any]] = {
    "/": {
        "get": {
            "summary": "The dashboard (HTML): sync progress, volumes, anomalies, top users, runs.",
            "security": [],
            "responses": {
                "200": {
                    "description": "HTML page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Database and source API reachability.",
            "security": [],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Health"}, "healthy"),
                "503": _json({"$ref": "#/components/schemas/Health"}, "degraded"),
            },
        }
    },
    "/status": {
        "get": {
            "summary": "What `etl status --json` prints (schema 1).",
            "responses": {
                "200": _json({"type": "object"}, "status document"),
                **_AUTH_401,
                **_DB_503,
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus exposition of the sync and of this server.",
            "responses": {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_AUTH_401,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document.",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
        }
    },
    "/events": {
        "post": {
            "summary": "Record events (one, an array, or {events: [...]}); idempotent by id.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Event"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                {
                                    "type": "object",
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Event"},
                                        }
                                    },
                                },
                            ]
                        }
                    }
                },
            },
            "responses": {
                "201": _json({"$ref": "#/components/schemas/PostResult"}, "at least one created"),
                "200": _json(
                    {"$ref": "#/components/schemas/PostResult"},
                    "none created: all already present (or purged, when some were present)",
                ),
                "400": _err("invalid JSON or an invalid event (field and reason in details)"),
                **_AUTH_401,
                "413": _err("body or event count over the cap"),
                "409": _err("every event was removed by a purge that blocks reloading"),
                "415": _err("not application/json"),
                **_DB_503,
            },
        }
    },
    "/events/{user_id}": {
        "get": {
            "summary": "A user's events, newest first, with their JSON details (keyset paging).",
            "parameters": [
                {
                    "name": "user_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                _q("type", {"type": "string"}, "event type(s); repeat or comma-separate"),
                _q("since", _TS, "inclusive lower bound"),
                _q("until", _TS, "exclusive upper bound"),
                _q("limit", {"type": "integer", "minimum": 1}, "at most the row cap"),
                _q("before", {"type": "string"}, "next_before of the previous page"),
            ],
            "responses": {
                "200": _json({"type": "object"}, "a page of events"),
                "400": _err("malformed id, time or limit"),
                **_AUTH_401,
                **_DB_503,
            },
        }
    },
    "/series": {
        "get": {
            "summary": "Counts per hour or day for one or more types (all when none).",
            "parameters": [*_SERIES_Q, _q("type", {"type": "string"}, "repeatable")],
            "responses": _SERIES_RESP,
        }
    },
    "/series/count": {
        "get": {
            "summary": "How many series (event types) are held.",
            "responses": {"200": _json({"type": "object"}, "{series: n}"), **_AUTH_401, **_DB_503},
        }
    },
    "/series/{type}": {
        "get": {
            "summary": "Counts per bucket for one type.",
            "parameters": [_TYPE_P, *_SERIES_Q],
            "responses": _SERIES_RESP,
        },
        "delete": {
            "summary": "Purge the type's events in [since, until); rollups kept consistent.",
            "parameters": [
                _TYPE_P,
                _q("since", _TS, "inclusive"),
                _q("until", _TS, "exclusive"),
                _q("dry_run", {"type": "boolean"}, "only count what would go"),
                _q("allow_reload", {"type": "boolean"}, "let a later ingest load them again"),
            ],
            "responses": {
                "200": _json({"type": "object"}, "matched / deleted"),
                "400": _err("bad parameter"),
                **_AUTH_401,
                **_DB_503,
            },
        },
    },
    "/series/{type}/stats": {
        "get": {
            "summary": "count, min, max, mean, p50, p95 and the trend of the type's series.",
            "parameters": [_TYPE_P, *_SERIES_Q],
            "responses": _SERIES_RESP,
        }
    },
    "/series/{type}/forecast": {
        "get": {
            "summary": "h buckets of additive Holt-Winters forecast with a 95 % interval.",
            "parameters": [
                _TYPE_P,
                *_SERIES_Q,
                _q("h", {"type": "integer", "minimum": 1}, "buckets ahead"),
            ],
            "responses": {**_SERIES_RESP, "422": _err("too little history to fit a forecast")},
        }
    },
    "/anomalies": {
        "get": {
            "summary": "As `etl anomalies --json`: anomalies and threshold breaches, judged"
            " without storing a run (run_id null).",
            "parameters": _ANOMALY_Q,
            "responses": {
                "200": _json({"type": "object"}, "the report; found: bool"),
                **_ANOMALY_ERRORS,
            },
        }
    },
    "/anomalies/runs": {
        "post": {
            "summary": "As `etl anomalies`: judge and store the run and its findings (the"
            " dashboard marks the last stored run's anomalies).",
            "parameters": _ANOMALY_Q,
            "responses": {
                "201": _json({"type": "object"}, "the stored report; run_id: int, found: bool"),
                **_ANOMALY_ERRORS,
            },
        }
    },
    "/top/{what}": {
        "get": {
            "summary": "Top users|types|pages by events|purchases, ties by key ascending.",
            "parameters": [
                {
                    "name": "what",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["users", "types", "pages"]},
                },
                _q("by", {"enum": ["events", "purchases"]}, "the measure"),
                _q("limit", {"type": "integer"}, "at most the row cap"),
                _q("since", _TS, "inclusive"),
                _q("until", _TS, "exclusive"),
            ],
            "responses": {
                "200": _json({"type": "object"}, "ranked rows"),
                "400": _err("bad parameter"),
                **_AUTH_401,
                **_DB_503,
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "etl serve", "version": __version__},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}],
        "paths": PATHS,
    }
