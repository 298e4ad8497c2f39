"""One error envelope for every response that is not a success.

``{"error": {"code": str, "message": str, "details": object | null}}`` with the HTTP status
to match. Handlers raise ``ApiError``; the middleware also turns aiohttp's own HTTP errors
(404, 405, 413 ...), our ``EtlError`` tree (a database failure is 503, a bad value 400) and
anything unexpected (500, logged, never its text: it may hold a DSN) into the envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from etl.errors import ConfigError, EtlError, SinkError

log = logging.getLogger("etl.serve")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered to the client as the envelope."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def bad_request(message: str, *, field: str | None = None, reason: str | None = None) -> ApiError:
    details = {"field": field, "reason": reason or message} if field else None
    return ApiError(400, "bad_request", message, details)


def envelope(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


_HTTP_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return envelope(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body over the size cap"
        return envelope(exc.status, code, message)
    except SinkError as exc:
        return envelope(503, "database_unavailable", str(exc))
    except ConfigError as exc:
        return envelope(400, "bad_request", str(exc))
    except EtlError as exc:
        return envelope(502, "upstream_error", str(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return envelope(500, "internal_error", "internal error (logged on the server)")
