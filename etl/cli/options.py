"""Options shared by several commands, each with its environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from etl import settings

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="DATASYNC_API_URL",
        help="API base, e.g. http://127.0.0.1:8080/api/v1. Unset: start the bundled sandbox.",
        show_default=False,
    ),
]
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


def load_dotenv(path: Path = Path(".env")) -> None:
    """Put ``KEY=VALUE`` lines of ``path`` into the environment unless already set."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(key, value)
