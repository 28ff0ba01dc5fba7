"""GitHub deliveries as plain values, what each means for the run that owns the PR, and what the
GitHub reconciler must feed when it finds that a delivery was missed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from foundry.domain.statuses import RunStatus

BRANCH = re.compile(r"^foundry/(?P<slug>[a-z0-9-]+)-(?P<short>[0-9a-f]{8})$")
MARKER = re.compile(r"^Foundry-Run:\s*(?P<run_id>[0-9a-fA-F-]{36})\s*$", re.MULTILINE)
IDENTIFIER = re.compile(r"\b([A-Za-z][A-Za-z0-9]{0,9}-\d{1,7})\b")
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out", "action_required", "startup_failure"})
PR_URL = re.compile(r"^https://[^/]+/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)/pull/\d+/?$")


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


def remediation_step(head_sha: str, reason: str) -> str:
    """The step that sends the agent back for one head and reason: its effect key is the marker
    that makes it happen once, whichever of the webhook and the reconciler saw the failure first."""
    return f"remediate:{head_sha}:{reason}"


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


# What the GitHub reconciler reads, and what it means. A missed webhook is caught up by feeding
# the very intents the webhooks would have produced, each under a delivery key derived from
# (PR, head SHA, state), through the same steps — which are themselves idempotent, so a webhook
# and the reconciler that saw the same change act once.

# A check run still counts as running in any status but this one.
CHECK_DONE = "completed"
# A delivery key must fit `webhook_deliveries.delivery_key`.
MAX_KEY = 255


@dataclass(frozen=True)
class CheckRun:
    name: str
    status: str
    conclusion: str | None = None


@dataclass(frozen=True)
class Observed:
    """A run's PR as GitHub has it now: open or not, and the check runs of its head."""

    pr: PullRequest
    open: bool
    checks: tuple[CheckRun, ...] = ()


@dataclass(frozen=True)
class Known:
    """What the run has recorded of its PR."""

    status: str
    pr_number: int | None
    pr_head_sha: str | None


@dataclass(frozen=True)
class CatchUp:
    """One intent to feed, and the state its delivery key names (open, closed, merged, ci_failed)."""

    state: str
    intent: PrChanged | PrClosed | Remediate

    @property
    def key(self) -> str:
        return reconcile_key(self.intent.pr, self.state)


def reconcile_key(pr: PullRequest, state: str) -> str:
    """The reconciler's delivery key: one per (PR, head SHA, state), however often it looks."""
    key = f"reconcile:{pr.repository}#{pr.number}:{pr.head_sha}:{state}"
    if len(key) <= MAX_KEY:
        return key
    return "reconcile:" + hashlib.sha256(key.encode()).hexdigest()


def failed_checks(checks: tuple[CheckRun, ...]) -> tuple[CheckRun, ...]:
    """The failed check runs of a head whose CI is over; () while any still runs, or none failed."""
    if any(check.status != CHECK_DONE for check in checks):
        return ()
    return tuple(check for check in checks if check.conclusion in FAILED_CONCLUSIONS)


def moved(known: Known, pr: PullRequest) -> bool:
    """The run has not recorded this PR at this head (the webhook saying so was missed)."""
    return (known.pr_number, known.pr_head_sha) != (pr.number, pr.head_sha)


def needs_checks(known: Known, observed_pr: PullRequest, is_open: bool) -> bool:
    """Whether the head's check runs could change anything: an open PR, unless the agent is at
    work on its branch again (a re-dispatched run whose head has not moved)."""
    return is_open and not (known.status == RunStatus.AGENT_RUNNING and not moved(known, observed_pr))


def catch_up(known: Known, observed: Observed) -> list[CatchUp]:
    """The intents the missed webhooks would have produced, in the order GitHub sent them."""
    pr = observed.pr
    steps: list[CatchUp] = []
    if moved(known, pr):
        action = "opened" if known.pr_number is None else "synchronize"
        steps.append(CatchUp("open", PrChanged(pr, action)))
    if not observed.open:
        return [*steps, CatchUp("merged" if pr.merged else "closed", PrClosed(pr))]
    failed = failed_checks(observed.checks) if needs_checks(known, pr, observed.open) else ()
    if failed:
        names = ", ".join(sorted({check.name for check in failed}))
        conclusions = "/".join(sorted({str(check.conclusion) for check in failed}))
        details = f"{names} concluded {conclusions} on {pr.head_sha[:12]}"
        steps.append(CatchUp("ci_failed", Remediate(pr, "ci_failed", details)))
    return steps


def repository_of(url: str | None) -> str | None:
    """`owner/name` from a PR's web URL (`https://github.com/owner/name/pull/7`), if it is one."""
    match = PR_URL.match(url or "")
    return f"{match.group('owner')}/{match.group('name')}" if match else None
