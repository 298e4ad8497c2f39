"""`etl export-ids FILE` and `etl submit FILE`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from etl.cli import app
from etl.cli.options import ApiKey, ApiUrl, DatabaseUrl, DataDir
from etl.errors import ConfigError, EtlError


@app.command("export-ids")
def export_ids_cmd(
    file: Annotated[Path, typer.Argument(help="Where to write the ids, one per line.")],
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
) -> None:
    """Write every loaded event id to FILE, one per line."""
    from etl.cli.db import database
    from etl.read.export import export_ids

    async def main() -> int:
        async with database(database_url, data_dir) as dsn:
            return await export_ids(dsn, file)

    try:
        count = asyncio.run(main())
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"wrote {count:,} ids to {file}")


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="File of ids, one per line (see export-ids).")],
    github_repo: Annotated[
        str | None, typer.Option(envvar="ETL_GITHUB_REPO", help="Repository URL to submit.")
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = "",
) -> None:
    """Post the ids in FILE to /api/v1/submissions and print the verdict."""
    from etl.source.http import Http
    from etl.source.submit import submit_ids

    async def main() -> dict[str, Any]:
        if not api_url or not api_key:
            raise ConfigError("submit needs --api-url and --api-key (DATASYNC_API_URL/_KEY)")
        async with Http(api_url, api_key) as http:
            return await submit_ids(http, file, github_repo)

    try:
        verdict = asyncio.run(main())
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(verdict.get("message") or json.dumps(verdict))
    typer.echo(json.dumps(verdict.get("data", verdict), indent=2))
