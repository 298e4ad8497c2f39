"""The suite reads as a specification: every test says, in its docstring, what it pins."""

from __future__ import annotations

import ast
from pathlib import Path


def test_every_test_has_a_docstring_saying_the_behaviour_it_pins() -> None:
    """A test without a docstring is a claim nobody can check; name each one that lacks it."""
    missing = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_test and node.name.startswith("test_") and not ast.get_docstring(node):
                missing.append(f"{path.name}::{node.name}")
    assert missing == []
