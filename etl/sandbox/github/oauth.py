"""The OAuth side: access tokens that expire, single-use refresh tokens, the device flow.

Like github.com: the token endpoint answers **200** with ``{"error": ...}`` for a bad grant,
form-encoded unless the client sends ``Accept: application/json``; refreshing spends the
refresh token *and* revokes the access token issued with it. ``client_credentials`` is an
extension GitHub does not have (generic OAuth2 servers do); the declarative source's tests
use it.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from etl.sandbox.github.config import GithubConfig

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class Grant:
    user: int
    expires: float  # sandbox-clock epoch seconds
    paired: str | None = None  # refresh token <-> its access token
    from_device: bool = False


@dataclass
class DeviceCode:
    user_code: str
    issued: float
    expires: float
    interval: float
    last_poll: float | None = None
    approved: bool = False
    denied: bool = False
    spent: bool = False


class OAuth:
    def __init__(self, config: GithubConfig) -> None:
        self.config = config
        self._rng = random.Random(f"oauth-{config.seed}")
        self.access: dict[str, Grant] = {t: Grant(1, float("inf")) for t in config.token_list}
        self.refresh: dict[str, Grant] = {}
        self.devices: dict[str, DeviceCode] = {}
        self.refreshes = 0  # successful refresh grants (tests read it)
        self.client_grants = 0  # tokens issued for client credentials (tests read it)

    def _token(self, prefix: str, n: int = 36) -> str:
        alphabet = string.ascii_letters + string.digits
        return prefix + "".join(self._rng.choice(alphabet) for _ in range(n))

    def user_of(self, token: str, now: float) -> int | None:
        grant = self.access.get(token)
        if grant is None or now >= grant.expires:
            return None
        return grant.user

    def issue(self, now: float, *, user: int = 1, from_device: bool = False) -> dict[str, Any]:
        c = self.config
        access, refresh = self._token("ghu_"), self._token("ghr_", 76)
        self.access[access] = Grant(user, now + c.scaled(c.access_token_ttl), refresh)
        self.refresh[refresh] = Grant(
            user, now + c.scaled(c.refresh_token_ttl), access, from_device
        )
        return {
            "access_token": access,
            "expires_in": round(c.scaled(c.access_token_ttl)),
            "refresh_token": refresh,
            "refresh_token_expires_in": round(c.scaled(c.refresh_token_ttl)),
            "scope": "",
            "token_type": "bearer",
        }

    # -- the device flow ---------------------------------------------------------------
    def new_device_code(self, now: float) -> tuple[str, DeviceCode]:
        c = self.config
        code = self._token("", 40).lower()
        letters = "".join(self._rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        device = DeviceCode(
            f"{letters[:4]}-{letters[4:]}", now, now + c.scaled(c.device_code_ttl),
            c.scaled(c.device_interval),
        )  # fmt: skip
        self.devices[code] = device
        return code, device

    def decide(self, user_code: str, *, approve: bool) -> bool:
        """A person enters ``user_code`` on the verification page and approves or denies."""
        for device in self.devices.values():
            if device.user_code == user_code.upper() and not device.spent:
                device.approved, device.denied = approve, not approve
                return True
        return False

    def poll_device(self, code: str, now: float) -> dict[str, Any]:
        c = self.config
        device = self.devices.get(code)
        if device is None or device.spent:
            return _err("bad_verification_code", "The device code is incorrect.")
        if now >= device.expires:
            return _err("expired_token", "The device code has expired.")
        if device.denied:
            device.spent = True
            return _err("access_denied", "The authorization request was denied.")
        auto = c.device_auto_approve > 0 and now >= device.issued + c.scaled(c.device_auto_approve)
        if device.approved or auto:
            device.spent = True
            return self.issue(now, from_device=True)
        too_soon = device.last_poll is not None and now - device.last_poll < device.interval
        device.last_poll = now
        if too_soon:
            device.interval += c.scaled(5)
            out = _err("slow_down", "Too many requests have been made in the same timeframe.")
            out["interval"] = round(device.interval)
            return out
        return _err("authorization_pending", "The authorization request is still pending.")

    # -- the token endpoint ----------------------------------------------------------------
    def grant(self, form: dict[str, str], now: float) -> dict[str, Any]:
        c = self.config
        grant_type = form.get("grant_type", "")
        if form.get("client_id") != c.client_id:
            return _err("incorrect_client_credentials", "The client_id is incorrect.")
        if grant_type == DEVICE_GRANT:
            return self.poll_device(form.get("device_code", ""), now)
        if grant_type == "refresh_token":
            return self._refresh(form, now)
        if grant_type == "client_credentials":
            if form.get("client_secret") != c.client_secret:
                return _err("incorrect_client_credentials", "The client_secret is incorrect.")
            out = self.issue(now)
            self.client_grants += 1
            self.refresh.pop(out.pop("refresh_token"), None)
            out.pop("refresh_token_expires_in")
            return out
        return _err("unsupported_grant_type", f"grant_type {grant_type!r} is not supported.")

    def _refresh(self, form: dict[str, str], now: float) -> dict[str, Any]:
        c = self.config
        old = self.refresh.pop(form.get("refresh_token", ""), None)
        if old is None or now >= old.expires:
            return _err("bad_refresh_token", "The refresh token passed is incorrect or expired.")
        if not old.from_device and form.get("client_secret") != c.client_secret:
            self.refresh[form["refresh_token"]] = old  # not spent by a bad request
            return _err("incorrect_client_credentials", "The client_secret is incorrect.")
        if old.paired is not None:
            self.access.pop(old.paired, None)
        self.refreshes += 1
        return self.issue(now, user=old.user, from_device=old.from_device)


def _err(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


async def read_form(request: web.Request) -> dict[str, str]:
    """The parameters of a token request: query, then a form or JSON body."""
    out = dict(request.query)
    raw = await request.read()
    if raw:
        if request.content_type == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            if isinstance(body, dict):
                out.update({str(k): str(v) for k, v in body.items()})
        else:
            out.update(parse_qsl(raw.decode("utf-8", "replace")))
    return out


def oauth_response(request: web.Request, body: dict[str, Any]) -> web.Response:
    """JSON when asked for (``Accept: application/json``), else form-encoded, as GitHub does."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(body)
    return web.Response(
        text=urlencode({k: v for k, v in body.items() if v is not None}),
        content_type="application/x-www-form-urlencoded",
    )
