"""The policy gate on the pull request itself, on open and after every push.

The worker claims a run whose PR head moved past the last head it checked, lists the PR's
changed files (GitHub API, paginated) and applies the policy: a forbidden path blocks the run
for good (blocked is terminal: a later green CI changes nothing); a sensitive area the approval
did not cover, or more files than `policy.max_files_changed`, needs a person.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.db import leases, outbox, runs, schema
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import policy
from foundry.domain.statuses import RunStatus
from foundry.services import effects

log = logs.get("foundry.pr_checks")
R = schema.runs
# A run with an open PR whose head commit was not checked yet.
_CLAIM = leases.Claim(
    R,
    [
        R.c.status.in_([RunStatus.PR_OPEN, RunStatus.REVIEW_REQUIRED]),
        R.c.pr_head_sha.is_not(None),
        (R.c.pr_checked_sha.is_(None)) | (R.c.pr_checked_sha != R.c.pr_head_sha),
    ],
    order_by=R.c.updated_at,
)


class PrChecks:
    def __init__(
        self,
        db: Database,
        *,
        github: GitHubClient | None,
        rules: policy.Policy,
        owner: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._github = github
        self._rules = rules
        self._owner = owner
        self._ttl = lease
        self._clock = clock

    def check_once(self) -> int:
        """Check one PR whose head moved; the number checked (0 or 1)."""
        claimed = self._db.transaction_sync(self._claim)
        if claimed is None:
            return 0
        lease, run = claimed
        files, note = self._files(run)
        verdict = None if files is None else policy.gate(files, self._rules)
        self._db.transaction_sync(lambda tx: self._finish(tx, lease, run, verdict, note))
        return 1

    async def _claim(self, tx: Tx) -> tuple[leases.Lease, Row] | None:
        return await _CLAIM(tx, owner=self._owner, now=self._clock(), ttl=self._ttl)

    def _files(self, run: Mapping[str, Any]) -> tuple[list[str] | None, str]:
        """The PR's paths, or None and why they could not be read (a retryable failure raises:
        the lease lapses and the check runs again)."""
        if self._github is None:
            return None, "no GitHub token: the PR's files were not checked"
        try:
            return self._github.pull_request_files(run["pr_repository"], int(run["pr_number"])), ""
        except OutboundError as exc:
            if exc.retryable:
                raise
            return None, f"the PR's files could not be read: {exc}"

    async def _finish(
        self, tx: Tx, lease: leases.Lease, run: Row, verdict: policy.Verdict | None, note: str
    ) -> None:
        now = self._clock()
        checked = {"pr_checked_sha": run["pr_head_sha"]}
        new, kind, data, body = _outcome(run, verdict, note)
        event = runs.NewEvent(kind, now, "foundry", {"head_sha": run["pr_head_sha"], **data})
        if new is not None and new != run["status"]:
            moved = await runs.transition(
                tx, run["id"], expected=run["status"], new=new, event=event, lease=lease, values=checked
            )
        else:
            moved = await runs.fenced_update(tx, run["id"], lease, checked, event)
        if not moved:
            return
        if body:
            step = f"{kind}_{str(run['pr_head_sha'])[:12]}"
            await outbox.enqueue(tx, effects.issue_comment(run, step, body), now=now)
        await leases.release(tx, R, lease, now=now)


def _outcome(
    run: Mapping[str, Any], verdict: policy.Verdict | None, note: str
) -> tuple[RunStatus | None, str, dict[str, Any], str]:
    """(new status or None, event kind, event data, comment body or "")."""
    if verdict is None:
        return None, "pr_check_skipped", {"note": note}, ""
    if verdict.blocked:
        paths = ", ".join(f"`{p}`" for p in verdict.forbidden)
        return (
            RunStatus.BLOCKED,
            "pr_blocked",
            {"forbidden": list(verdict.forbidden)},
            f"**Foundry blocked this run**: the pull request touches forbidden paths ({paths}).",
        )
    uncovered = sorted(set(verdict.required_roles) - set(run["required_roles"] or []))
    if uncovered or verdict.too_many_files:
        why = (
            f"it touches areas needing {', '.join(uncovered)}, which the approval did not cover"
            if uncovered
            else "it changes more files than policy.max_files_changed allows"
        )
        return (
            RunStatus.REVIEW_REQUIRED,
            "pr_review_required",
            {"uncovered_roles": uncovered, "too_many_files": verdict.too_many_files},
            f"**A person needs to review this pull request**: {why}.",
        )
    return None, "pr_checked", {"areas": list(verdict.areas)}, ""
