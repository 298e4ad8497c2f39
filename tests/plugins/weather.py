"""A third-party package's source: a callable returning a SourceSpec, or a spec file path."""

from __future__ import annotations

from pathlib import Path

from etl.rest.load import parse
from etl.rest.spec import SourceSpec

SPEC = """
name: weather
description: hourly readings (a third-party source)
base_url: http://127.0.0.1:9/api
streams:
  readings:
    path: /readings
    paginator: {type: offset, limit: 50}
    primary_key: [station, at]
    columns:
      station: text
      at: timestamp
      celsius: number
"""


def spec() -> SourceSpec:
    return parse(SPEC, "weather (entry point)")


def spec_file() -> Path:
    return Path(__file__).parent.parent.parent / "etl/sources/specs/github.yaml"


def broken() -> SourceSpec:
    raise RuntimeError("the vendor's API changed")
