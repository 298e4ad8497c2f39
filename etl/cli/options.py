"""Options shared by several commands, each with its environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from etl import settings


def _api_url(help_text: str) -> Any:
    return typer.Option("--api-url", envvar="DATASYNC_API_URL", help=help_text, show_default=False)


ApiUrl = Annotated[
    str | None,
    _api_url("API base, e.g. http://127.0.0.1:8080/api/v1. Unset: start the bundled sandbox."),
]
# Commands that read only the database accept the API's options so one environment (or
# .env) serves every command; their help must not promise what `ingest` does with them.
ApiUrlUnused = Annotated[
    str | None, _api_url("Accepted for one shared environment; this command does not use it.")
]
ApiUrlHealth = Annotated[
    str | None, _api_url("API base to check (GET <url> with the key). Unset: no API check.")
]
ApiUrlRequired = Annotated[str | None, _api_url("API base, e.g. https://host/api/v1 (required).")]
ApiKey = Annotated[
    str,
    typer.Option(
        "--api-key",
        envvar="DATASYNC_API_KEY",
        help="API key (sent as X-API-Key).",
        show_default=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        help="postgresql://… URL. Unset: an embedded PostgreSQL in --data-dir.",
        show_default=False,
    ),
]


def default_data_dir() -> Path:
    return settings.default_data_dir(os.environ)


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="ETL_DATA_DIR",
        help="Where the embedded PostgreSQL and the delivery log live.",
        default_factory=default_data_dir,
        show_default=settings.DATA_DIR_HINT,
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", envvar="ETL_QUIET", help="Only errors and the summary.")
]
LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format", envvar="ETL_LOG_FORMAT", help=f"{' or '.join(settings.LOG_FORMATS)}."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
