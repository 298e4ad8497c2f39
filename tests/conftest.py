"""Shared fixtures: real PostgreSQL (tests/fixtures_db.py), real sandbox (tests/fixtures_sandbox.py)."""

pytest_plugins: list[str] = ["tests.fixtures_db", "tests.fixtures_sandbox"]
