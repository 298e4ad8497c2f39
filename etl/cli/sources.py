"""`etl sources` and `etl discover`: what sources exist and what their streams look like.

    etl sources                  what is available (built-in, spec files, entry points)
    etl discover github          each stream's table, key, cursor, columns; the config it reads

(`etl check`/`etl auth` are in ``signin.py``, `etl sync` in ``sync.py``.) A SOURCE is a name
(`etl sources`) or the path of a spec file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.db import fail
from etl.cli.options import AsJson
from etl.cli.root import app
from etl.errors import EtlError

if TYPE_CHECKING:
    from etl.rest.spec import SourceSpec

SourceArg = Annotated[str, typer.Argument(help="A source name (see `etl sources`) or a spec file.")]


def _spec(source: str) -> SourceSpec:
    from etl.sources.registry import describe

    return describe(source)


@app.command()
def sources(as_json: AsJson = False) -> None:
    """List the sources available and their streams."""
    from etl.sources.registry import available

    try:
        found = available()
    except EtlError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps([{**asdict(s), "streams": list(s.streams)} for s in found]))
        return
    for s in found:
        typer.echo(f"{s.name:<12} {s.kind:<7} {', '.join(s.streams) or '-':<28} {s.origin}")


@app.command()
def discover(source: SourceArg, as_json: AsJson = False) -> None:
    """Each stream's table, primary key, cursor and columns, and the config the source reads."""
    try:
        spec = _spec(source)
    except EtlError as exc:
        raise fail(exc) from None
    doc = {
        "source": spec.name,
        "description": spec.description,
        "auth": spec.auth.type,
        "config": [
            {"name": p.name, "env": p.env, "default": None if p.secret else p.default,
             "required": p.required, "secret": p.secret}
            for p in spec.config
        ],
        "streams": [
            {
                "name": s.name,
                "table": s.table,
                "primary_key": list(s.primary_key),
                "cursor": s.incremental.cursor_field if s.incremental else None,
                "parent": s.parent.stream if s.parent else None,
                "columns": [
                    {"name": c.name, "type": c.type, "from": ".".join(c.source)}
                    for c in s.columns
                ],
            }
            for s in spec.streams
        ],
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(doc))
        return
    typer.echo(f"{spec.name}: {spec.description} (auth: {spec.auth.type})")
    for p in spec.config:
        shown = "(secret)" if p.secret else (p.default or "")
        typer.echo(f"  config {p.name:<14} env {p.env or '-':<22} {shown}")
    for s in spec.streams:
        cursor = f", cursor {s.incremental.cursor_field}" if s.incremental else ""
        if s.parent is not None:
            cursor += f", per row of {s.parent.stream}"
        typer.echo(f"stream {s.name} -> table {s.table} (key {', '.join(s.primary_key)}{cursor})")
        for c in s.columns:
            typer.echo(f"  {c.name:<18} {c.type:<10} from {'.'.join(c.source)}")
