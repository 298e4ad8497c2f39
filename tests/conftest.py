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
    # The token stores' sealing key (etl.auth.sealing): one key file for the session, shared
    # by the tests and the `etl` processes they start (env_for keeps XDG_CONFIG_HOME), never
    # the user's own ~/.config/etl/secret.key or ETL_SECRET_KEY.
    config.stash[_OWN_CONFIG] = os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(
        prefix="etl-pytest-config-"
    )
    os.environ.pop("ETL_SECRET_KEY", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for key in (_OWN_BASETEMP, _OWN_CONFIG):
        own = config.stash.get(key, None)
        if own:
            shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()
_OWN_CONFIG = pytest.StashKey[str]()
