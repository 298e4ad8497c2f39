"""``.env`` in the working directory, read with python-dotenv's rules (quotes, ``export``,
``# comments``, ``${VAR}`` expansion); a variable already set in the environment wins."""

from __future__ import annotations

import io
import os
from pathlib import Path

from etl.errors import ConfigError


def load_env_file(path: Path = Path(".env")) -> None:
    """Put the variables of ``path`` into ``os.environ`` unless already set.

    A file that is not UTF-8 or holds a NUL byte is a ConfigError naming the line, rather
    than a traceback or a variable cut short. No file, no cost (python-dotenv is imported
    only when one exists).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a directory, not a .env file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} holds a NUL byte; is it a text file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not valid UTF-8 (save it as UTF-8)") from exc
    from dotenv import dotenv_values

    for key, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is not None and key not in os.environ:
            os.environ[key] = value
