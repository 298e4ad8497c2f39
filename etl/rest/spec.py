"""A declarative REST source, as typed values (what a spec file says, validated).

One ``SourceSpec`` per file: the config it takes (with env variables and defaults), how it
authenticates, defaults shared by its streams, and the streams. A stream says where its
records are (path, params, records path, paginator), what identifies one (primary key),
how to read only what changed (incremental cursor field, look-back) and what its table
looks like (columns, each with a type and the field it comes from). The engine assumes
nothing else about a source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from etl.models import ColumnType

AuthType = Literal["none", "api_key", "bearer", "oauth2_client_credentials", "oauth2_refresh_token"]
PaginatorType = Literal["none", "link_header", "cursor", "offset", "page_number"]
Action = Literal["retry", "reset_pagination", "refresh_token_then_retry", "fail", "ignore"]
ResetFormat = Literal["auto", "epoch", "seconds"]

AUTH_TYPES: tuple[str, ...] = AuthType.__args__  # type: ignore[attr-defined]
PAGINATOR_TYPES: tuple[str, ...] = PaginatorType.__args__  # type: ignore[attr-defined]
COLUMN_TYPES: tuple[str, ...] = ColumnType.__args__  # type: ignore[attr-defined]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]
RESET_FORMATS: tuple[str, ...] = ResetFormat.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ConfigParam:
    name: str
    env: str | None = None
    default: str | None = None
    required: bool = False
    secret: bool = False
    description: str = ""
    # unset (no env value, no default): start the bundled sandbox, use its root + this path
    sandbox: str | None = None


@dataclass(frozen=True, slots=True)
class AuthSpec:
    type: AuthType = "none"
    # api_key / bearer
    value: str | None = field(default=None, repr=False)  # the key or token (from config)
    name: str = "X-API-Key"  # api_key: header or query parameter name
    location: Literal["header", "query"] = "header"
    scheme: str = "Bearer"
    # oauth2
    token_url: str | None = None
    device_url: str | None = None  # enables `etl auth <source>`
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)  # seeds the token store
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Paginator:
    type: PaginatorType = "none"
    rel: str = "next"  # link_header
    cursor_path: str = ""  # cursor: where the next cursor is in the body
    param: str = "cursor"  # cursor: query parameter; page_number: page parameter
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100  # offset: page size; page_number: page size (when size_param is set)
    size_param: str | None = None  # page_number: the page size parameter
    start: int = 1  # page_number: the first page


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """Header names (case-insensitive). ``auto``: a reset above 10^9 is an epoch time."""

    limit: str | None = "X-RateLimit-Limit"
    remaining: str | None = "X-RateLimit-Remaining"
    reset: str | None = "X-RateLimit-Reset"
    reset_format: ResetFormat = "auto"
    retry_after: str = "Retry-After"


@dataclass(frozen=True, slots=True)
class ResponseRule:
    action: Action
    status: tuple[int, ...] = ()  # empty: any status
    header_present: str | None = None
    header_equals: tuple[tuple[str, str], ...] = ()
    message: str | None = None  # for fail: what to tell the user

    def matches(self, status: int, headers: dict[str, str]) -> bool:
        if self.status and status not in self.status:
            return False
        if self.header_present is not None and self.header_present.lower() not in headers:
            return False
        return all(headers.get(k.lower()) == v for k, v in self.header_equals)


@dataclass(frozen=True, slots=True)
class Incremental:
    cursor_field: str  # a column name
    param: str | None = None  # query parameter carrying the last value (e.g. since)
    lookback_s: float = 0.0
    initial: str | None = None  # the first run's value (None: no parameter, read everything)
    ordered: bool = True  # records arrive in ascending cursor order: checkpoint every page


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    source: tuple[str, ...]  # the field path in the record
    nullable: bool = True
    exists: bool = False  # the column is whether the field is present (booleans)


@dataclass(frozen=True, slots=True)
class Defaults:
    headers: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    paginator: Paginator = Paginator()
    rate_limit: RateLimitHeaders = RateLimitHeaders()
    responses: tuple[ResponseRule, ...] = ()
    page_size: int | None = None


@dataclass(frozen=True, slots=True)
class Parent:
    """A child stream reads one path per record of its parent stream (``{field}`` in the
    path is that record's column), for the parent's records changed since the child's mark
    (the parent's cursor value it last reached): GitHub's comments of each updated issue."""

    stream: str
    fields: tuple[str, ...]  # the parent's columns named in the path
    cursor_type: ColumnType = "timestamp"  # the parent's cursor column's type (the mark's)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    path: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    records: tuple[str, ...] = ()  # path to the record list in the body; () = the body
    method: Literal["GET", "POST"] = "GET"
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    paginator: Paginator = Paginator()
    rate_limit: RateLimitHeaders = RateLimitHeaders()
    responses: tuple[ResponseRule, ...] = ()
    incremental: Incremental | None = None
    table: str = ""
    parent: Parent | None = None

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    file: str
    base_url: str
    streams: tuple[StreamSpec, ...]
    config: tuple[ConfigParam, ...] = ()
    auth: AuthSpec = AuthSpec()
    description: str = ""
    check_path: str | None = None  # `etl check`: a cheap request that needs the credentials

    def stream(self, name: str) -> StreamSpec | None:
        return next((s for s in self.streams if s.name == name), None)
