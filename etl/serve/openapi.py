"""The OpenAPI 3.1 document of `etl serve`, served at ``/openapi.json``.

Kept true by tests/test_serve_openapi.py: every route of the app is documented with the
statuses it can answer, and every documented route exists.
"""

from __future__ import annotations

from typing import Any

from etl import __version__

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
                "200": _json({"$ref": "#/components/schemas/PostResult"}, "all already present"),
                "400": _err("invalid JSON or an invalid event (field and reason in details)"),
                **_AUTH_401,
                "413": _err("body or event count over the cap"),
                "415": _err("not application/json"),
                **_DB_503,
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "api", "dataset"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "database": {"enum": ["ok", "error"]},
            "api": {"enum": ["ok", "error", "not configured"]},
            "dataset": {"type": "object"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "type", "timestamp"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"type": "string"},
            "timestamp": {"description": "ISO 8601, epoch s/ms/µs, or RFC 2822"},
            "name": {"type": ["string", "null"]},
            "userId": {"type": ["string", "null"], "format": "uuid"},
            "sessionId": {"type": ["string", "null"], "format": "uuid"},
            "properties": {"type": ["object", "null"]},
            "session": {"type": ["object", "null"]},
        },
    },
    "PostResult": {
        "type": "object",
        "properties": {
            "created": {"type": "integer"},
            "present": {"type": "integer"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"enum": ["created", "present"]},
                    },
                },
            },
        },
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
