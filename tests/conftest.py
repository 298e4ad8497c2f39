"""Shared fixtures: real PostgreSQL (fixtures_db.py) and the real sandbox (fixtures_sandbox.py)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

pytest_plugins: list[str] = [
    "tests.fixtures_db",
    "tests.fixtures_sandbox",
    "tests.fixtures_github",
    "tests.serve_harness",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, the embedded PostgreSQL servers run as the user ``pgserver`` inside the tests'
    temp dirs. Every pytest session started on the machine resets /tmp/pytest-of-root to
    mode 0700, which would cut a server of a session still running off from its data: so
    each session gets a temp root of its own (removed at the end) unless --basetemp is given.
    """
    if config.option.basetemp is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        config.option.basetemp = tempfile.mkdtemp(prefix="etl-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()
