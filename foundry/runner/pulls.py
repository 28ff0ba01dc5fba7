"""The run's one pull request: the open PR for its branch if there is one, else a new one.

Find before create, and a create that GitHub refuses because a PR for that head already exists
(another try got there first) finds it again: however often a job is retried, one PR per run.
"""

from __future__ import annotations

from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.domain import pulls
from foundry.runner.jobs import Job


def ensure(github: GitHubClient, job: Job) -> tuple[pulls.PullRequest, bool]:
    """The run's open PR and whether this call created it."""
    where = job.where
    found = github.open_pull_request(where.repository, job.branch)
    if found is not None:
        return found.pr, False
    created = github.create_pull_request(
        where.repository, head=job.branch, base=where.base, title=title(job), body=body(job)
    )
    if created is not None:
        return created.pr, True
    found = github.open_pull_request(where.repository, job.branch)
    if found is None:
        raise OutboundError("github", "GitHub says a PR for the branch exists but lists none", retryable=True)
    return found.pr, False


def title(job: Job) -> str:
    return f"{job.issue.identifier}: {' '.join(job.issue.title.split())}"[:256]


def body(job: Job) -> str:
    plan = job.plan or {}
    summary = str(plan.get("summary") or "").strip()
    issue = f"[{job.issue.identifier}]({job.issue.url})" if job.issue.url else job.issue.identifier
    parts = [summary] if summary else []
    parts.append(f"Issue: {issue}")
    if job.issue.tracker == "github":
        # GitHub's closing keyword: the merge closes the issue (as completed, which leaves a
        # merged run as it is), and the issue links to the PR meanwhile.
        parts.append(f"Closes {job.issue.identifier}")
    parts += ["Opened by `foundry runner` for Foundry.", f"Foundry-Run: {job.run_id}"]
    return "\n\n".join(parts)
