"""The OAuth2 device flow (RFC 8628), for a person at a terminal: no secret, no redirect.

``start`` asks for a code; ``poll`` waits on an injected ``sleep`` at the server's
interval until the person approves. The four outcomes are distinct: pending (keep
polling), ``slow_down`` (add 5 s, or take the server's new interval), ``expired_token``
and ``access_denied`` (an ``AuthError`` each, saying what happened).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from etl.auth.oauth2 import TokenEndpoint, error_of
from etl.auth.tokens import TokenSet
from etl.errors import AuthError, SourceError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float


async def start(endpoint: TokenEndpoint, device_url: str, scope: str | None) -> DeviceCode:
    form = {"client_id": endpoint.client_id}
    if scope:
        form["scope"] = scope
    body = await endpoint.post_to(device_url, form)
    try:
        return DeviceCode(
            str(body["device_code"]),
            str(body["user_code"]),
            str(body.get("verification_uri") or body.get("verification_url")),
            float(body.get("expires_in", 900)),
            float(body.get("interval", 5)),
        )
    except (KeyError, ValueError) as exc:
        error = error_of(body) or "no device_code in the answer"
        raise SourceError(f"the device authorization endpoint failed ({error})") from exc


async def poll(
    endpoint: TokenEndpoint,
    code: DeviceCode,
    *,
    sleep: Callable[[float], Awaitable[None]],
    wall: Callable[[], float],
) -> TokenSet:
    interval = code.interval
    waited = 0.0
    while True:
        if waited > code.expires_in:
            raise AuthError("the code expired before it was entered; run the command again")
        await sleep(interval)
        waited += interval
        body = await endpoint.post({"grant_type": DEVICE_GRANT, "device_code": code.device_code})
        error = error_of(body)
        if error is None:
            return TokenSet.from_response(body, wall(), "device flow")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            given = body.get("interval")
            interval = float(given) if given is not None else interval + 5
            continue
        if error == "expired_token":
            raise AuthError("the code expired before it was entered; run the command again")
        if error == "access_denied":
            raise AuthError("the request was denied in the browser; nothing was stored")
        raise AuthError(f"the device flow failed ({error})")
