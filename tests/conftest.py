"""Shared fixtures: real PostgreSQL (fixtures_db.py) and the real sandbox (fixtures_sandbox.py)."""

pytest_plugins: list[str] = [
    "tests.fixtures_db",
    "tests.fixtures_sandbox",
    "tests.fixtures_github",
    "tests.serve_harness",
]
