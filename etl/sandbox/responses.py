"""Response helpers: Express-like JSON (headers, ETag, request id) and ALB-like HTML errors."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping

import msgspec
from aiohttp import web

_ENCODE = msgspec.json.Encoder().encode
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def request_id() -> str:
    return str(uuid.uuid4())


def etag(body: bytes) -> str:
    """Express's weak ETag: W/"<hex length>-<27 chars of base64 sha1>"."""
    digest = base64.b64encode(hashlib.sha1(body, usedforsecurity=False).digest()).decode()
    return f'W/"{len(body):x}-{digest[:27]}"'


def express_headers(
    body: bytes, rid: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Powered-By": "Express",
        "Access-Control-Allow-Origin": "*",
        "X-Request-ID": rid,
        "ETag": etag(body),
    }
    if extra:
        headers.update(extra)
    return headers


def json_bytes(obj: object) -> bytes:
    return _ENCODE(obj)


def json_response(
    obj: object | bytes,
    *,
    status: int = 200,
    rid: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = obj if isinstance(obj, bytes) else _ENCODE(obj)
    return web.Response(
        body=body, status=status, headers=express_headers(body, rid or request_id(), headers)
    )


def error(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """The API's error envelope ``{error, message, code}`` (plus ``extra`` fields)."""
    body: dict[str, object] = {
        "error": REASONS.get(status, "Error"),
        "message": message,
        "code": code,
    }
    if extra:
        body.update(extra)
    return json_response(body, status=status, headers=headers)


def alb_error(status: int) -> web.Response:
    """What the AWS load balancer sends for 5xx: a small HTML page, ``Server: awselb/2.0``."""
    title = f"{status} {REASONS.get(status, 'Error')}"
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers={"Server": "awselb/2.0"}
    )
