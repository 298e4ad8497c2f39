"""A fleet file's text as plain data plus the line of every key, for ``file:line:`` errors.

YAML through PyYAML's node tree (every key's own line); TOML through ``tomllib`` and a
scan of its lines (table headers and ``key =`` lines: a key inside an inline table is
reported at its table's line).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from etl.errors import ConfigError

Path_ = tuple[str | int, ...]

_TOML_LINE = re.compile(r"(?:at )?line (\d+)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


@dataclass(slots=True)
class Located:
    """The parsed document and where each part of it starts."""

    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, at: Path_) -> int:
        for end in range(len(at), -1, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return 1

    def where(self, at: Path_) -> str:
        return f"{self.path}:{self.line(at)}"

    def error(self, at: Path_, message: str) -> ConfigError:
        return ConfigError(f"{self.where(at)}: {message}")

    def mapping(self, at: Path_) -> Mapping[str, Any]:
        """The mapping at ``at``, or a ``ConfigError`` saying it is not one."""
        value = self.data
        for part in at:
            value = value[part]
        if not isinstance(value, Mapping):
            what = "the file" if not at else repr(at[-1])
            raise self.error(at, f"{what} must be a mapping of keys to values")
        return value


def parse_yaml(path: Path, text: str) -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line}: not valid YAML: {problem}") from exc
    doc = Located(path, data if data is not None else {})
    if node is not None:
        _yaml_lines(node, (), doc.lines)
    return doc


def _yaml_lines(node: yaml.Node, at: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*at, key.value)
            lines[here] = key.start_mark.line + 1
            _yaml_lines(value, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _yaml_lines(item, (*at, i), lines)


def parse_toml(path: Path, text: str) -> Located:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE.search(str(exc))
        raise ConfigError(f"{path}:{m.group(1) if m else 1}: not valid TOML: {exc}") from exc
    doc = Located(path, data)
    _toml_lines(text, doc.lines)
    return doc


def _toml_lines(text: str, lines: dict[Path_, int]) -> None:
    """Where each table and key starts: ``[defaults]``, ``[[sources]]`` (the i-th entry),
    ``[sources.options]`` (the current entry's), and ``key =`` lines under them."""
    table: Path_ = ()
    counts: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        head = _HEADER.match(raw)
        if head is not None:
            names = [p.strip() for p in head.group(2).split(".")]
            if head.group(1) == "[[":  # an array of tables: a new entry
                counts[names[0]] = counts.get(names[0], -1) + 1
                table = (names[0], counts[names[0]], *names[1:])
            elif names[0] in counts:  # a sub-table of the current entry
                table = (names[0], counts[names[0]], *names[1:])
            else:
                table = tuple(names)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key is not None:
            lines.setdefault((*table, key.group(1)), number)
