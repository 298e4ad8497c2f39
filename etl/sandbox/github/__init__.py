"""The sandbox's GitHub-compatible surface (issues, comments, both rate limits, OAuth2).

Mounted by ``etl.sandbox.build_app`` at ``/github``: the API root is
``http://HOST:PORT/github`` (api.github.com) and the OAuth endpoints live under
``http://HOST:PORT/github/login/`` (github.com/login). See /work/shared/github-api.md.
"""

from __future__ import annotations

from etl.sandbox.github.config import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REPO,
    DEMO_TOKEN,
    GithubConfig,
)

__all__ = ["DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DEMO_REPO", "DEMO_TOKEN", "GithubConfig"]
