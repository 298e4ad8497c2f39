"""A spec file -> a validated ``SourceSpec``, before any request (exit 2 with file:line).

``load`` checks the structure, the types, every name a stream refers to (primary key and
cursor field are columns, ``${param}`` placeholders are declared config) and nothing
else; ``resolve`` fills the placeholders from the environment the CLI passes in.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import yaml

from etl.errors import ConfigError
from etl.rest import nodes
from etl.rest.nodes import Ctx, Obj, SpecError
from etl.rest.parents import with_parent
from etl.rest.spec import (
    ACTIONS,
    AUTH_TYPES,
    COLUMN_TYPES,
    PAGINATOR_TYPES,
    RESET_FORMATS,
    AuthSpec,
    Column,
    ConfigParam,
    Defaults,
    Incremental,
    Paginator,
    Parent,
    RateLimitHeaders,
    ResponseRule,
    SourceSpec,
    StreamSpec,
)

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CURSOR_TYPES = ("timestamp", "integer", "bigint", "text")


def load(path: Path) -> SourceSpec:
    return parse_node(nodes.read(path), str(path))


def parse(text: str, file: str = "<spec>") -> SourceSpec:
    return parse_node(nodes.compose(text, file), file)


def parse_node(root: yaml.Node, file: str) -> SourceSpec:
    top = Obj(Ctx(file), root, "a mapping with name, base_url and streams")
    version = top.opt("version", nodes.integer, 1)
    if version != 1:
        raise Ctx(file, "version").problem(root, f"only version 1 is known, got {version}")
    name = top.req("name", _ident)
    config = top.opt("config", _config, ())
    declared = {p.name for p in config}

    def tmpl(ctx: Ctx, node: yaml.Node) -> str:
        value = nodes.text(ctx, node)
        for ref in _PLACEHOLDER.findall(value):
            if ref not in declared:
                raise ctx.problem(node, f"${{{ref}}} is not a declared config parameter")
        return value

    spec = SourceSpec(
        name=name,
        file=file,
        description=top.opt("description", nodes.text, ""),
        config=config,
        base_url=top.req("base_url", tmpl),
        auth=top.opt("auth", lambda c, n: _auth(c, n, tmpl), AuthSpec()),
        check_path=top.opt("check", tmpl, None),
        streams=(),
    )
    defaults = top.opt("defaults", lambda c, n: _defaults(c, n, tmpl), Defaults())
    streams_node = top.raw("streams")
    top.done()
    if streams_node is None:
        raise Ctx(file).problem(root, "missing required key 'streams'")
    parents: dict[str, tuple[Ctx, yaml.Node]] = {}
    streams = tuple(
        _stream(ctx, node, stream_name, name, defaults, tmpl, parents)
        for stream_name, ctx, node in nodes.entries(Ctx(file, "streams"), streams_node)
    )
    if not streams:
        raise Ctx(file, "streams").problem(streams_node, "a source needs at least one stream")
    return replace(spec, streams=tuple(with_parent(s, streams, parents) for s in streams))


def _ident(ctx: Ctx, node: yaml.Node) -> str:
    value = nodes.text(ctx, node)
    if not _IDENT.match(value):
        raise ctx.fail(node, "a lower-case name (letters, digits, _; at most 63)")
    return value


def _config(ctx: Ctx, node: yaml.Node) -> tuple[ConfigParam, ...]:
    out = []
    for name, c, child in nodes.entries(ctx, node):
        o = Obj(c, child, "a mapping with env, default, required, secret")
        out.append(
            ConfigParam(
                name=name,
                env=o.opt("env", nodes.text, None),
                default=o.opt("default", nodes.text, None),
                required=o.opt("required", nodes.boolean, False),
                secret=o.opt("secret", nodes.boolean, False),
                description=o.opt("description", nodes.text, ""),
                sandbox=o.opt("sandbox", nodes.text, None),
            )
        )
        o.done()
    return tuple(out)


def sandbox_needed(spec: SourceSpec, env: Mapping[str, str]) -> bool:
    """Whether a parameter that falls back to the bundled sandbox has no value."""
    return any(
        p.sandbox is not None and p.default is None and not (p.env and env.get(p.env))
        for p in spec.config
    )


def sandbox_env(spec: SourceSpec, env: Mapping[str, str], root: str) -> dict[str, str]:
    """``env`` with every unset sandbox-backed parameter pointing into the sandbox at ``root``."""
    out = dict(env)
    for p in spec.config:
        if p.sandbox is not None and p.env and not env.get(p.env):
            out[p.env] = root + p.sandbox
    return out


def _auth(ctx: Ctx, node: yaml.Node, tmpl: nodes.Reader) -> AuthSpec:
    o = Obj(ctx, node, "a mapping with a type")
    kind = o.req("type", nodes.choice(AUTH_TYPES))
    if kind in ("api_key", "bearer"):
        spec = AuthSpec(
            type=kind,  # type: ignore[arg-type]
            value=o.req("value", tmpl),
            name=o.opt("name", nodes.text, "X-API-Key"),
            location=o.opt("in", nodes.choice(("header", "query")), "header"),  # type: ignore[arg-type]
            scheme=o.opt("scheme", nodes.text, "Bearer"),
        )
    elif kind.startswith("oauth2"):
        spec = AuthSpec(
            type=kind,  # type: ignore[arg-type]
            token_url=o.req("token_url", tmpl),
            device_url=o.opt("device_url", tmpl, None),
            client_id=o.req("client_id", tmpl),
            client_secret=o.opt("client_secret", tmpl, None),
            refresh_token=o.opt("refresh_token", tmpl, None),
            scope=o.opt("scope", nodes.text, None),
        )
    else:
        spec = AuthSpec()
    o.done()
    return spec


def _paginator(ctx: Ctx, node: yaml.Node) -> Paginator:
    o = Obj(ctx, node, "a mapping with a type")
    kind = o.req("type", nodes.choice(PAGINATOR_TYPES))
    base = Paginator(type=kind)  # type: ignore[arg-type]
    if kind == "link_header":
        base = replace(base, rel=o.opt("rel", nodes.text, "next"))
    elif kind == "cursor":
        base = replace(
            base,
            cursor_path=o.req("cursor_path", nodes.text),
            param=o.opt("param", nodes.text, "cursor"),
        )
    elif kind == "offset":
        base = replace(
            base,
            offset_param=o.opt("offset_param", nodes.text, "offset"),
            limit_param=o.opt("limit_param", nodes.text, "limit"),
            limit=o.opt("limit", _positive, 100),
        )
    elif kind == "page_number":
        base = replace(
            base,
            param=o.opt("param", nodes.text, "page"),
            start=o.opt("start", nodes.integer, 1),
            size_param=o.opt("size_param", nodes.text, None),
            limit=o.opt("size", _positive, 100),
        )
    o.done()
    return base


def _positive(ctx: Ctx, node: yaml.Node) -> int:
    value = nodes.integer(ctx, node)
    if value < 1:
        raise ctx.fail(node, "an integer >= 1")
    return value


def _rate_limit(ctx: Ctx, node: yaml.Node) -> RateLimitHeaders:
    o = Obj(ctx, node, "a mapping of header names")
    d = RateLimitHeaders()
    out = RateLimitHeaders(
        limit=o.opt("limit", nodes.text, d.limit),
        remaining=o.opt("remaining", nodes.text, d.remaining),
        reset=o.opt("reset", nodes.text, d.reset),
        reset_format=o.opt("reset_format", nodes.choice(RESET_FORMATS), d.reset_format),  # type: ignore[arg-type]
        retry_after=o.opt("retry_after", nodes.text, d.retry_after),
    )
    o.done()
    return out


def _rules(ctx: Ctx, node: yaml.Node) -> tuple[ResponseRule, ...]:
    out = []
    for c, child in nodes.items(ctx, node):
        o = Obj(c, child, "a mapping with an action")
        out.append(
            ResponseRule(
                action=o.req("action", nodes.choice(ACTIONS)),  # type: ignore[arg-type]
                status=o.opt("status", nodes.integers, ()),
                header_present=o.opt("header_present", nodes.text, None),
                header_equals=tuple(
                    (k.lower(), v) for k, v in o.opt("header_equals", nodes.string_map, {}).items()
                ),
                message=o.opt("message", nodes.text, None),
            )
        )
        o.done()
    return tuple(out)


def _defaults(ctx: Ctx, node: yaml.Node, tmpl: nodes.Reader) -> Defaults:
    o = Obj(ctx, node)
    out = Defaults(
        headers=tuple(o.opt("headers", nodes.string_map, {}).items()),
        params=tuple(o.opt("params", nodes.string_map, {}).items()),
        paginator=o.opt("paginator", _paginator, Paginator()),
        rate_limit=o.opt("rate_limit", _rate_limit, RateLimitHeaders()),
        responses=o.opt("responses", _rules, ()),
    )
    o.done()
    return out


def _columns(ctx: Ctx, node: yaml.Node) -> tuple[Column, ...]:
    out = []
    for name, c, child in nodes.entries(ctx, node):
        if not _IDENT.match(name):
            raise c.problem(child, "a column name must be lower-case letters, digits and _")
        if isinstance(child, yaml.ScalarNode):
            kind = nodes.choice(COLUMN_TYPES)(c, child)
            out.append(Column(name, kind, (name,)))  # type: ignore[arg-type]
            continue
        o = Obj(c, child, "a type name or a mapping with type and from")
        kind = o.req("type", nodes.choice(COLUMN_TYPES))
        source = o.opt("from", nodes.text, name)
        out.append(
            Column(
                name,
                kind,  # type: ignore[arg-type]
                tuple(source.split(".")),
                nullable=o.opt("nullable", nodes.boolean, True),
                exists=o.opt("exists", nodes.boolean, False),
            )
        )
        o.done()
    if not out:
        raise ctx.problem(node, "a stream needs at least one column")
    return tuple(out)


def _stream(
    ctx: Ctx,
    node: yaml.Node,
    name: str,
    source: str,
    d: Defaults,
    tmpl: nodes.Reader,
    parents: dict[str, tuple[Ctx, yaml.Node]],
) -> StreamSpec:
    if not _IDENT.match(name):
        raise ctx.problem(node, "a stream name must be lower-case letters, digits and _")
    o = Obj(ctx, node, "a mapping with path, primary_key and columns")
    path = o.req("path", tmpl)
    parent_node = o.raw("parent")
    parents[name] = (ctx.at("parent"), parent_node) if parent_node else (ctx, node)
    parent = None if parent_node is None else Parent(_ident(ctx.at("parent"), parent_node), ())
    columns = o.req("columns", _columns)
    names = {c.name for c in columns}
    pk_node = o.raw("primary_key")
    if pk_node is None:
        raise ctx.problem(node, "missing required key 'primary_key'")
    primary_key = nodes.strings(ctx.at("primary_key"), pk_node)
    for key in primary_key:
        if key not in names:
            raise ctx.at("primary_key").problem(pk_node, f"{key!r} is not one of the columns")
    incremental = None
    inc_node = o.raw("incremental")
    if inc_node is not None:
        incremental = _incremental(ctx.at("incremental"), inc_node, columns)
    records = o.opt("records", nodes.text, "")
    stream = StreamSpec(
        name=name,
        path=path,
        primary_key=primary_key,
        columns=columns,
        records=tuple(p for p in records.split(".") if p and p != "$"),
        method=o.opt("method", nodes.choice(("GET", "POST")), "GET"),  # type: ignore[arg-type]
        params=tuple({**dict(d.params), **o.opt("params", _tmpl_map(tmpl), {})}.items()),
        headers=tuple({**dict(d.headers), **o.opt("headers", _tmpl_map(tmpl), {})}.items()),
        paginator=o.opt("paginator", _paginator, d.paginator),
        rate_limit=o.opt("rate_limit", _rate_limit, d.rate_limit),
        responses=o.opt("responses", _rules, ()) + d.responses,
        incremental=incremental,
        table=o.opt("table", _ident, f"{source}_{name}"),
        parent=parent,
    )
    o.done()
    return stream


def _tmpl_map(tmpl: nodes.Reader) -> nodes.ReaderOf[dict[str, str]]:
    def read(ctx: Ctx, node: yaml.Node) -> dict[str, str]:
        return {k: tmpl(c, v) for k, c, v in nodes.entries(ctx, node)}

    return read


def _incremental(ctx: Ctx, node: yaml.Node, columns: tuple[Column, ...]) -> Incremental:
    o = Obj(ctx, node, "a mapping with cursor_field")
    field_node = o.raw("cursor_field")
    if field_node is None:
        raise ctx.problem(node, "missing required key 'cursor_field'")
    cursor = nodes.text(ctx.at("cursor_field"), field_node)
    column = next((c for c in columns if c.name == cursor), None)
    if column is None or column.type not in _CURSOR_TYPES:
        raise ctx.at("cursor_field").problem(
            field_node, f"{cursor!r} must be a column of type {', '.join(_CURSOR_TYPES)}"
        )
    out = Incremental(
        cursor_field=cursor,
        param=o.opt("param", nodes.text, None),
        lookback_s=o.opt("lookback", nodes.duration, 0.0),
        initial=o.opt("initial", nodes.text, None),
        ordered=o.opt("ordered", nodes.boolean, True),
    )
    o.done()
    return out


# -- resolving the config ----------------------------------------------------------------
def config_values(spec: SourceSpec, env: Mapping[str, str]) -> dict[str, str]:
    """Each config parameter's value: its env variable, else its default; missing required
    ones are a ConfigError naming the variable."""
    values: dict[str, str] = {}
    missing = []
    for p in spec.config:
        value = env.get(p.env) if p.env else None
        if value is None:
            value = p.default
        if value is None:
            if p.required:
                missing.append(p.env or p.name)
            continue
        values[p.name] = value
    if missing:
        raise ConfigError(
            f"{spec.name}: set {', '.join(missing)} (see `etl discover {_source_arg(spec)}`)"
        )
    return values


def _source_arg(spec: SourceSpec) -> str:
    """What names ``spec`` on the command line: a shipped spec's name, else its file."""
    shipped = Path(__file__).resolve().parent.parent / "sources" / "specs"
    path = Path(spec.file)
    if not path.is_file() or path.resolve().parent == shipped:
        return spec.name
    return shlex.quote(spec.file)


def resolve(spec: SourceSpec, env: Mapping[str, str]) -> SourceSpec:
    """The spec with every ``${param}`` replaced (an unset optional parameter is empty)."""
    values = config_values(spec, env)

    def sub(value: str | None) -> str | None:
        if value is None:
            return None
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), value)

    def sub_pairs(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((k, sub(v) or "") for k, v in pairs)

    a = spec.auth
    auth = replace(
        a,
        value=sub(a.value),
        token_url=sub(a.token_url),
        device_url=sub(a.device_url),
        client_id=sub(a.client_id),
        client_secret=sub(a.client_secret) or None,
        refresh_token=sub(a.refresh_token) or None,
    )
    streams = tuple(
        replace(s, path=sub(s.path) or "", params=sub_pairs(s.params), headers=sub_pairs(s.headers))
        for s in spec.streams
    )
    return replace(
        spec,
        base_url=(sub(spec.base_url) or "").rstrip("/"),
        auth=auth,
        check_path=sub(spec.check_path),
        streams=streams,
    )


__all__ = [
    "SpecError",
    "config_values",
    "load",
    "parse",
    "resolve",
    "sandbox_env",
    "sandbox_needed",
]
