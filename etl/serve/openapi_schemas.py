"""The component schemas of the OpenAPI document (``etl.serve.openapi``)."""

from __future__ import annotations

from typing import Any

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
            "last_run": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}},
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
            "purged": {
                "type": "integer",
                "description": "not recorded: removed by a purge that blocks reloading",
            },
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"enum": ["created", "present", "purged"]},
                    },
                },
            },
        },
    },
}
