"""`etl export-ids FILE` and `etl submit FILE`."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from etl.cli.options import ApiKey, ApiUrlRequired, DatabaseUrl, DataDir
from etl.cli.root import app
from etl.errors import ConfigError, EtlError, NothingIngested


def check_output_file(path: Path) -> None:
    """Before any work: a file can be created next to ``path`` (export-ids writes
    ``<path>.part`` and renames it), and ``path`` itself is not a directory."""
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"cannot write {path}: {reason}") from exc


@app.command("export-ids")
def export_ids_cmd(
    file: Annotated[Path, typer.Argument(help="Where to write the ids, one per line.")],
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
) -> None:
    """Write every loaded event id to FILE, one per line.

    Exits 9 when nothing has been ingested where it looked (no embedded database in
    --data-dir, or no events table at DATABASE_URL); starts no database to find that out.
    """
    from etl.cli.db import embedded_pgdata, open_database
    from etl.read.export import export_ids

    async def main() -> int:
        async with open_database(database_url, data_dir) as dsn:
            if dsn is None:
                raise NothingIngested(
                    f"nothing ingested here: no database in {embedded_pgdata(data_dir)} "
                    "(point --data-dir / ETL_DATA_DIR or DATABASE_URL where `etl ingest` loaded)"
                )
            return await export_ids(dsn, file)

    try:
        check_output_file(file)
        count = asyncio.run(main())
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"wrote {count:,} ids to {file}")


def _read_ids(file: Path) -> tuple[int, int, int]:
    """(ids, distinct ids, lines that are not a UUID) in ``file``."""
    import uuid

    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {file}: {reason}") from exc
    ids = [line for line in lines if line]
    bad = 0
    for item in ids:
        try:
            uuid.UUID(item)
        except ValueError:
            bad += 1
    return len(ids), len(set(ids)), bad


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="File of ids, one per line (see export-ids).")],
    github_repo: Annotated[
        str | None,
        typer.Option(
            envvar="ETL_GITHUB_REPO",
            help="URL of the repository to submit (required), e.g. https://github.com/you/etl.",
        ),
    ] = None,
    api_url: ApiUrlRequired = None,
    api_key: ApiKey = "",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the file and the options, say what would be sent, send nothing "
            "(the API allows 5 submissions per key).",
        ),
    ] = False,
) -> None:
    """Post the ids in FILE to /api/v1/submissions and print the verdict.

    Everything is checked before the request (exit 2): --github-repo, --api-url, --api-key
    and the file. Each POST counts against the key's 5 submissions: try --dry-run first.
    """
    from etl.source.http import Http
    from etl.source.submit import submit_ids

    def check() -> tuple[str, str, tuple[int, int, int]]:
        if not github_repo:
            raise ConfigError("submit needs --github-repo (ETL_GITHUB_REPO): the repository URL")
        parts = urlsplit(github_repo)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"--github-repo must be a URL like https://github.com/you/etl, got {github_repo!r}"
            )
        if not api_url or not api_key:
            raise ConfigError("submit needs --api-url and --api-key (DATASYNC_API_URL/_KEY)")
        counts = _read_ids(file)
        if counts[0] == 0:
            raise ConfigError(f"{file} holds no ids")
        return github_repo, api_url, counts

    async def main(repo: str, url: str) -> dict[str, Any]:
        async with Http(url, api_key) as http:
            return await submit_ids(http, file, repo)

    try:
        repo, url, (total, distinct, bad) = check()
        if dry_run:
            typer.echo(
                f"dry run: would POST {total:,} ids ({distinct:,} distinct, {bad:,} not a UUID) "
                f"from {file} to {url.rstrip('/')}/submissions for {repo}; nothing was sent"
            )
            return
        verdict = asyncio.run(main(repo, url))
    except EtlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(verdict.get("message") or json.dumps(verdict))
    typer.echo(json.dumps(verdict.get("data", verdict), indent=2))
