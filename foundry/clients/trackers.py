"""The issue tracker as a port: what Foundry's effects ask of any tracker, and one adapter each.

A run's effects on its issue (a comment at each step, the PR attached) name the issue by
tracker; the sender looks the adapter up by that name in a table. Each adapter keeps its
tracker's way of saying a thing exactly once: Linear takes a client-chosen comment id, GitHub
has none, so its comments carry a hidden marker and are found before they are created.
Abilities only one tracker has (Linear's agent sessions) stay on that tracker's own client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from foundry.clients.github_issues import GitHubIssuesClient
from foundry.clients.linear import LinearClient
from foundry.domain import effects, trackers


@dataclass(frozen=True)
class IssueAddress:
    """Where an effect lands: the tracker, the issue's id there and the key people read."""

    tracker: str
    id: str
    key: str


class IssueTracker(Protocol):
    def comment(self, issue: IssueAddress, body: str, *, effect_key: str, retried: bool) -> str:
        """Say `body` on the issue once for `effect_key`; the comment's id in the tracker.
        `retried`: an earlier attempt may have been accepted without Foundry hearing so."""
        ...

    def attach(self, issue: IssueAddress, url: str, title: str, *, effect_key: str, retried: bool) -> None:
        """Link the pull request `url` from the issue, once."""
        ...


class LinearTracker:
    def __init__(self, client: LinearClient) -> None:
        self._client = client

    def comment(self, issue: IssueAddress, body: str, *, effect_key: str, retried: bool) -> str:
        comment_id = effects.linear_comment_id(effect_key)
        self._client.create_comment(comment_id=comment_id, issue_id=issue.id, body=body)
        return comment_id

    def attach(self, issue: IssueAddress, url: str, title: str, *, effect_key: str, retried: bool) -> None:
        self._client.attach(issue_id=issue.id, url=url, title=title)


class GitHubIssuesTracker:
    def __init__(self, client: GitHubIssuesClient) -> None:
        self._client = client

    def comment(self, issue: IssueAddress, body: str, *, effect_key: str, retried: bool) -> str:
        address = trackers.github_issue(issue.key)
        if address is None:
            raise ValueError(f"{issue.key!r} does not name a GitHub issue as owner/name#number")
        repository, number = address
        found = self._client.comment(repository, number, effect_key=effect_key, body=body, look_first=retried)
        return str(found)

    def attach(self, issue: IssueAddress, url: str, title: str, *, effect_key: str, retried: bool) -> None:
        """GitHub links an issue to a PR only from the PR's side, so the issue is told in a comment."""
        self.comment(
            issue, f"**Pull request opened**: [{title}]({url})", effect_key=effect_key, retried=retried
        )


def table(linear: LinearClient | None, github: GitHubIssuesClient | None) -> dict[str, IssueTracker]:
    """The adapters Foundry can write to, by tracker name: a tracker without credentials is absent."""
    found: dict[str, IssueTracker] = {}
    if linear is not None:
        found[trackers.LINEAR] = LinearTracker(linear)
    if github is not None:
        found[trackers.GITHUB] = GitHubIssuesTracker(github)
    return found
