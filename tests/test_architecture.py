"""House rules a reader relies on, checked over the source rather than remembered."""

from __future__ import annotations

import re
from pathlib import Path

ETL = Path(__file__).resolve().parent.parent / "etl"
# `from None` stays right where nothing is being translated: leaving the CLI with an exit
# code, or re-raising the first error of a task group
_ALLOWED = re.compile(r"raise (typer\.Exit|fail\(|first_error\(|StoppedAtStartup)")


def test_a_translated_exception_keeps_its_cause() -> None:
    """errors.py's rule: a third-party exception becomes ours with ``raise X(...) from exc``,
    never ``from None``, so a debugger (or a bug report) still sees what went wrong."""
    offenders = []
    for path in sorted(ETL.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if "from None" not in line:
                continue
            statement = " ".join(lines[max(0, number - 4) : number])
            if not _ALLOWED.search(statement):
                offenders.append(f"{path.relative_to(ETL.parent)}:{number}")
    assert offenders == []
