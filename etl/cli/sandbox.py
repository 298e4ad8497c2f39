"""`etl sandbox`: placeholder until the sandbox lands."""

from __future__ import annotations

from etl.cli import app


@app.command()
def sandbox() -> None:
    """Serve a faithful DataSync API sandbox on loopback."""
    raise NotImplementedError
