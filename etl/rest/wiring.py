"""A resolved spec -> the objects a run needs: its ``Auth`` and its ``RestClient``."""

from __future__ import annotations

from collections.abc import Callable

from etl.auth.oauth2 import ClientCredentials, Requester, RotatingRefresh, TokenEndpoint
from etl.auth.schemes import ApiKey, Auth, Bearer, NoAuth
from etl.auth.tokens import TokenStore
from etl.errors import ConfigError
from etl.rest.spec import SourceSpec


def token_endpoint(spec: SourceSpec, http: Requester) -> TokenEndpoint:
    a = spec.auth
    if not a.token_url or not a.client_id:
        raise ConfigError(f"{spec.name}: OAuth2 needs token_url and client_id")
    return TokenEndpoint(http, a.token_url, a.client_id, a.client_secret)


def build_auth(
    spec: SourceSpec, http: Requester, store: TokenStore, wall: Callable[[], float]
) -> Auth:
    a = spec.auth
    if a.type == "none":
        return NoAuth()
    if a.type in ("api_key", "bearer"):
        if not a.value:
            raise ConfigError(f"{spec.name}: the {a.type.replace('_', ' ')} is empty")
        if a.type == "api_key":
            return ApiKey(a.value, name=a.name, location=a.location)
        return Bearer(a.value, scheme=a.scheme)
    if a.type == "oauth2_client_credentials":
        return ClientCredentials(token_endpoint(spec, http), scope=a.scope, wall=wall)
    return RotatingRefresh(
        token_endpoint(spec, http),
        store,
        spec.name,
        wall=wall,
        initial_refresh_token=a.refresh_token,
    )
