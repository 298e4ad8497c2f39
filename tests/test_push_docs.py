"""The README documents every pushable dataset: each column with its type and its key."""

from __future__ import annotations

from pathlib import Path

from etl.push.datasets import CATALOGUE

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_dataset_column_is_documented_with_its_type_and_key() -> None:
    """Each dataset has a table in README's push section: one row per column, type as in
    the code, the key columns ticked; no column documented that the code does not send."""
    section = README[README.index("### Datasets") : README.index("Metrics worth building")]
    for spec in CATALOGUE.values():
        start = section.index(f"`{spec.name}` —")
        end = section.find("\n`", start + 1)
        table = section[start : end if end > 0 else None]
        rows = [line for line in table.splitlines() if line.startswith("| `")]
        documented = {}
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            documented[cells[0].strip("`")] = (cells[1], cells[3] == "✓")
        assert documented == {
            c.name: (c.type, c.name in spec.primary_keys) for c in spec.columns
        }, spec.name
