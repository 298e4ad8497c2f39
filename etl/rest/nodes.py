"""Reading a YAML document with its line numbers, and saying exactly what is wrong.

PyYAML's composer gives every node a start mark; ``Obj`` walks a mapping node, takes the
keys it knows with their expected kinds, and ``done()`` rejects whatever is left, with the
closest valid name. Every problem is a ``SpecError`` (a ``ConfigError``: exit 2) reading
``<file>:<line>: <key path>: <what was expected>, got <what was there>``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import yaml

from etl.errors import ConfigError

T = TypeVar("T")
D = TypeVar("D")
ReaderOf = Callable[["Ctx", yaml.Node], T]
Reader = Callable[["Ctx", yaml.Node], str]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class SpecError(ConfigError):
    pass


def compose(text: str, file: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        raise SpecError(f"{file}:{line}: not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: not valid YAML") from exc
    if node is None:
        raise SpecError(f"{file}:1: the spec is empty")
    return node


def read(path: Path) -> yaml.Node:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror or exc})") from exc
    return compose(text, str(path))


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = str(node.value)
    return repr(value if len(value) <= 40 else value[:37] + "...")


class Ctx:
    """Where we are: the file and the key path, for messages."""

    def __init__(self, file: str, path: str = "") -> None:
        self.file = file
        self.path = path

    def at(self, key: str | int) -> Ctx:
        part = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else key)
        return Ctx(self.file, self.path + part)

    def fail(self, node: yaml.Node, expected: str) -> SpecError:
        return self.problem(node, f"expected {expected}, got {_shown(node)}")

    def problem(self, node: yaml.Node, message: str) -> SpecError:
        where = f"{self.path}: " if self.path else ""
        return SpecError(f"{self.file}:{node.start_mark.line + 1}: {where}{message}")


# -- scalars -------------------------------------------------------------------------------
def _scalar(ctx: Ctx, node: yaml.Node, expected: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, expected)
    return str(node.value)


def text(ctx: Ctx, node: yaml.Node) -> str:
    value = _scalar(ctx, node, "a string")
    if node.tag == "tag:yaml.org,2002:null":
        raise ctx.fail(node, "a string")
    return value


def integer(ctx: Ctx, node: yaml.Node) -> int:
    value = _scalar(ctx, node, "an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise ctx.fail(node, "an integer") from exc


def boolean(ctx: Ctx, node: yaml.Node) -> bool:
    value = _scalar(ctx, node, "true or false").lower()
    if value in ("true", "yes", "on"):
        return True
    if value in ("false", "no", "off"):
        return False
    raise ctx.fail(node, "true or false")


def duration(ctx: Ctx, node: yaml.Node) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h``, ``2d`` or ``250ms``."""
    m = _DURATION.match(_scalar(ctx, node, "a duration like 60s, 5m, 1h"))
    if m is None:
        raise ctx.fail(node, "a duration like 60s, 5m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def choice(options: Sequence[str]) -> Callable[[Ctx, yaml.Node], str]:
    def read_choice(ctx: Ctx, node: yaml.Node) -> str:
        value = _scalar(ctx, node, "one of " + ", ".join(options))
        if value not in options:
            raise ctx.fail(node, "one of " + ", ".join(options))
        return value

    return read_choice


def integers(ctx: Ctx, node: yaml.Node) -> tuple[int, ...]:
    """An integer or a list of them."""
    if isinstance(node, yaml.SequenceNode):
        return tuple(integer(ctx.at(i), n) for i, n in enumerate(node.value))
    return (integer(ctx, node),)


def strings(ctx: Ctx, node: yaml.Node) -> tuple[str, ...]:
    """A string or a list of them."""
    if isinstance(node, yaml.SequenceNode):
        return tuple(text(ctx.at(i), n) for i, n in enumerate(node.value))
    return (text(ctx, node),)


def string_map(ctx: Ctx, node: yaml.Node) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, "a mapping of names to values")
    return {text(ctx, k): text(ctx.at(str(k.value)), v) for k, v in node.value}


def items(ctx: Ctx, node: yaml.Node) -> Iterator[tuple[Ctx, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.fail(node, "a list")
    for i, child in enumerate(node.value):
        yield ctx.at(i), child


def entries(ctx: Ctx, node: yaml.Node) -> Iterator[tuple[str, Ctx, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, "a mapping")
    for key, value in node.value:
        name = text(ctx, key)
        yield name, ctx.at(name), value


class Obj:
    """A mapping node read key by key; ``done()`` rejects the keys nobody took."""

    def __init__(self, ctx: Ctx, node: yaml.Node, what: str = "a mapping") -> None:
        if not isinstance(node, yaml.MappingNode):
            raise ctx.fail(node, what)
        self.ctx = ctx
        self.node = node
        self._keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = text(ctx, key)
            if name in self._keys:
                raise ctx.problem(key, f"key {name!r} appears twice")
            self._keys[name] = (key, value)
        self._known: list[str] = []

    def has(self, name: str) -> bool:
        return name in self._keys

    def raw(self, name: str) -> yaml.Node | None:
        self._known.append(name)
        entry = self._keys.pop(name, None)
        return None if entry is None else entry[1]

    def req(self, name: str, read: Callable[[Ctx, yaml.Node], T]) -> T:
        node = self.raw(name)
        if node is None:
            typo = difflib.get_close_matches(name, list(self._keys), n=1)
            if typo:  # point at the misspelt key rather than at the mapping
                key = self._keys[typo[0]][0]
                raise self.ctx.problem(
                    key, f"unknown key {typo[0]!r}; did you mean {name!r} (required)?"
                )
            raise self.ctx.problem(self.node, f"missing required key {name!r}")
        return read(self.ctx.at(name), node)

    def opt(self, name: str, read: Callable[[Ctx, yaml.Node], T], default: D) -> T | D:
        node = self.raw(name)
        return default if node is None else read(self.ctx.at(name), node)

    def done(self) -> None:
        for name, (key, _) in self._keys.items():
            close = difflib.get_close_matches(name, self._known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.ctx.problem(
                key, f"unknown key {name!r} (expected one of: {', '.join(self._known)}){hint}"
            )
