"""The repository's issues and comments: deterministic from the seed, changeable by tests.

Timestamps are whole seconds (GitHub's ``YYYY-MM-DDTHH:MM:SSZ``); about one update in
twenty shares its second with a neighbour, so ``since`` (inclusive) re-reads ties.
``touch`` moves an issue's ``updated_at`` to "now" as an edit on the real service would.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from etl.sandbox.github.config import DEMO_REPO, NEWEST_UPDATE, GithubConfig

ISSUE_ID_BASE = 2_800_000_000  # int64 ids beyond 2^31, as GitHub's are today
COMMENT_ID_BASE = 4_400_000_000
_LABELS = ("bug", "enhancement", "docs", "question", "good first issue")
_USERS = ("octocat", "hubot", "mona", "ana", "bjørn", "李雷")


def malformed(seed: int, record_id: int, share: float) -> bool:
    """Whether the ``malformed`` knob breaks this record (the same records every time)."""
    return share > 0 and random.Random(f"{seed}:{record_id}").random() < share


def iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Issue:
    number: int
    id: int
    title: str
    user: int
    labels: tuple[int, ...]
    created: int
    updated: int
    closed: int | None
    pull_request: bool
    body: str
    comments: list[int] = field(default_factory=list)  # comment ids

    def json(self, root: str) -> dict[str, Any]:
        url = f"{root}/repos/{DEMO_REPO}/issues/{self.number}"
        out: dict[str, Any] = {
            "url": url,
            "html_url": f"https://github.com/{DEMO_REPO}/issues/{self.number}",
            "id": self.id,
            "node_id": f"I_kwDO{self.id:x}",
            "number": self.number,
            "title": self.title,
            "user": {"login": _USERS[self.user], "id": 1000 + self.user},
            "labels": [{"id": 7000 + i, "name": _LABELS[i]} for i in self.labels],
            "state": "closed" if self.closed is not None else "open",
            "comments": len(self.comments),
            "created_at": iso(self.created),
            "updated_at": iso(self.updated),
            "closed_at": iso(self.closed) if self.closed is not None else None,
            "body": self.body,
        }
        if self.pull_request:
            out["pull_request"] = {"url": f"{root}/repos/{DEMO_REPO}/pulls/{self.number}"}
        return out


@dataclass
class Comment:
    id: int
    issue: int  # number
    user: int
    created: int
    updated: int
    body: str

    def json(self, root: str) -> dict[str, Any]:
        return {
            "url": f"{root}/repos/{DEMO_REPO}/issues/comments/{self.id}",
            "id": self.id,
            "node_id": f"IC_kwDO{self.id:x}",
            "issue_url": f"{root}/repos/{DEMO_REPO}/issues/{self.issue}",
            "user": {"login": _USERS[self.user], "id": 1000 + self.user},
            "created_at": iso(self.created),
            "updated_at": iso(self.updated),
            "body": self.body,
        }


class Repository:
    def __init__(self, config: GithubConfig) -> None:
        rng = random.Random(config.seed)
        span = int(config.span_days * 86400)
        start = NEWEST_UPDATE - span
        self.issues: dict[int, Issue] = {}
        self.comments: dict[int, Comment] = {}
        next_comment = COMMENT_ID_BASE
        previous_update = start
        for i in range(config.issues):
            created = start + (span * i) // max(1, config.issues) // 2
            if rng.random() < 0.05:
                updated = previous_update  # a tie with the previous issue's update
            else:
                updated = created + int(rng.random() ** 2 * (NEWEST_UPDATE - created))
            updated = max(created, min(updated, NEWEST_UPDATE))
            previous_update = updated
            closed = updated if rng.random() < 0.4 else None
            number = i + 1
            issue = Issue(
                number=number,
                id=ISSUE_ID_BASE + i * 37 + rng.randrange(37),
                title=f"Issue {number}: {rng.choice(('crash', 'typo', 'slow', 'ünïcode'))}",
                user=rng.randrange(len(_USERS)),
                labels=tuple(sorted(rng.sample(range(len(_LABELS)), rng.randrange(3)))),
                created=created,
                updated=updated,
                closed=closed,
                pull_request=rng.random() < config.pull_request_share,
                body=f"Steps to reproduce #{number}\n\n- one\n- two",
            )
            for _ in range(rng.randrange(config.max_comments + 1)):
                c_created = created + rng.randrange(max(1, updated - created + 1))
                comment = Comment(
                    next_comment, number, rng.randrange(len(_USERS)), c_created, c_created, "+1"
                )
                self.comments[comment.id] = comment
                issue.comments.append(comment.id)
                next_comment += 1
            self.issues[number] = issue
        self._next_comment = next_comment
        self._sorted: dict[tuple[str, str], list[Issue]] = {}  # dropped on every change

    def touch(self, number: int, now: float, *, title: str | None = None) -> Issue:
        """An edit on the service: ``updated_at`` becomes ``now`` (and the title changes)."""
        issue = self.issues[number]
        issue.updated = max(issue.updated, int(now))
        self._sorted.clear()
        if title is not None:
            issue.title = title
        return issue

    def add_issue(self, now: float, title: str = "A new issue") -> Issue:
        number = len(self.issues) + 1
        issue = Issue(
            number, ISSUE_ID_BASE + 50_000_000 + number, title, 0, (), int(now), int(now),
            None, False, "",
        )  # fmt: skip
        self.issues[number] = issue
        self._sorted.clear()
        return issue

    def list_issues(
        self, *, state: str, sort: str, direction: str, since: int | None
    ) -> list[Issue]:
        ordered = self._sorted.get((sort, direction))
        if ordered is None:  # sorted once per order until the data changes (pages are cheap)
            ordered = self._sorted[sort, direction] = sorted(
                self.issues.values(), key=_ISSUE_ORDER.get(sort, _by_created),
                reverse=direction == "desc",
            )  # fmt: skip
        return [
            i
            for i in ordered
            if (state == "all" or (state == "closed") == (i.closed is not None))
            and (since is None or i.updated >= since)
        ]

    def add_comment(self, number: int, now: float, body: str = "a new comment") -> Comment:
        """A comment on an issue, which (as on GitHub) moves the issue's ``updated_at``."""
        issue = self.touch(number, now)
        comment = Comment(self._next_comment, number, 0, int(now), int(now), body)
        self._next_comment += 1
        self.comments[comment.id] = comment
        issue.comments.append(comment.id)
        return comment

    def list_comments(
        self, *, sort: str, direction: str, since: int | None, issue: int | None = None
    ) -> list[Comment]:
        pool = (
            self.comments.values()
            if issue is None
            else [self.comments[i] for i in self.issues[issue].comments]
        )
        rows = [c for c in pool if since is None or c.updated >= since]
        key = (lambda c: (c.updated, c.id)) if sort == "updated" else (lambda c: (c.created, c.id))
        rows.sort(key=key, reverse=direction == "desc")
        return rows


def _by_created(i: Issue) -> tuple[int, int]:
    return i.created, i.number


_ISSUE_ORDER = {
    "updated": lambda i: (i.updated, i.number),
    "comments": lambda i: (len(i.comments), i.number),
    "created": _by_created,
}
