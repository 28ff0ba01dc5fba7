"""GitHub deliveries as plain values, and what each means for the run that owns the PR."""

from __future__ import annotations

import re
from dataclasses import dataclass

BRANCH = re.compile(r"^foundry/(?P<slug>[a-z0-9-]+)-(?P<short>[0-9a-f]{8})$")
MARKER = re.compile(r"^Foundry-Run:\s*(?P<run_id>[0-9a-fA-F-]{36})\s*$", re.MULTILINE)
IDENTIFIER = re.compile(r"\b([A-Za-z][A-Za-z0-9]{0,9}-\d{1,7})\b")
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out", "action_required", "startup_failure"})


@dataclass(frozen=True)
class PullRequest:
    repository: str
    number: int
    url: str
    title: str
    body: str
    head_branch: str
    head_sha: str
    merged: bool = False


@dataclass(frozen=True)
class PrChanged:
    """opened / reopened / synchronize: a PR appeared or moved."""

    pr: PullRequest
    action: str


@dataclass(frozen=True)
class PrClosed:
    pr: PullRequest


@dataclass(frozen=True)
class Remediate:
    """CI failed or a reviewer asked for changes: the agent should try again, if allowed."""

    pr: PullRequest
    reason: str
    details: str


@dataclass(frozen=True)
class Ignore:
    reason: str


Intent = PrChanged | PrClosed | Remediate | Ignore


@dataclass(frozen=True)
class Link:
    """How a PR names its run, strongest first: the branch, the body's marker, the identifier."""

    short_id: str | None
    run_id: str | None
    identifiers: tuple[str, ...]


def link(pr: PullRequest) -> Link:
    branch = BRANCH.match(pr.head_branch)
    marker = MARKER.search(pr.body or "")
    slug_identifiers = IDENTIFIER.findall(branch.group("slug")) if branch else []
    found = [*slug_identifiers, *IDENTIFIER.findall(pr.head_branch), *IDENTIFIER.findall(pr.title)]
    identifiers = tuple(dict.fromkeys(i.upper() for i in found))
    return Link(
        branch.group("short") if branch else None, marker.group("run_id") if marker else None, identifiers
    )


def on_pull_request(action: str, pr: PullRequest) -> Intent:
    if action in ("opened", "reopened", "synchronize", "ready_for_review"):
        return PrChanged(pr, action)
    if action == "closed":
        return PrClosed(pr)
    return Ignore(f"pull_request {action} is not acted on")


def on_review(action: str, state: str, body: str, pr: PullRequest) -> Intent:
    if action == "submitted" and state.lower() == "changes_requested":
        return Remediate(pr, "changes_requested", body or "A reviewer requested changes.")
    return Ignore(f"review {action} ({state}) is not acted on")


def on_check_suite(action: str, conclusion: str | None, app: str, prs: list[PullRequest]) -> Intent:
    if action != "completed":
        return Ignore(f"check_suite {action} is not acted on")
    if conclusion not in FAILED_CONCLUSIONS:
        return Ignore(f"check suite concluded {conclusion}")
    if not prs:
        return Ignore("the check suite names no pull request")
    return Remediate(prs[0], "ci_failed", f"{app or 'CI'} concluded {conclusion} on {prs[0].head_sha[:12]}")
