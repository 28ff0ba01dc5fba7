"""The GitHub Issues reconciler: GitHub never retries a failed delivery, so what a missed `issues`
webhook would have done is done by reading GitHub, through the same intake — never twice.

At most once per `reconcile.github_interval_s` (the first pass one interval after the worker
starts, so a fleet restarted together does not read every issue at once), a pass

- lists the open issues carrying the trigger label in each of `github.issue_repositories` and
  opens a run for each that never had one, under the delivery key `reconcile:<node id>`: a pass
  repeated, here or in another worker, is a duplicate, and a webhook for the issue attaches to
  the run intake already holds;
- reads the issue of each active GitHub run and stops the run when the issue was deleted,
  closed, or stripped of the trigger label (a run the label started), under the delivery key
  `reconcile:stop:<run id>`, so it is stopped once. A closed issue spares a run that has its PR:
  a merged PR's "Closes #42" closes the issue, and the merge's own webhook may come second.

A refusal GitHub may lift (5xx, 429) or one about our token ends the pass; the next one resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients import github_issues
from foundry.clients.errors import OutboundError
from foundry.clients.github_issues import GitHubIssuesClient, Issue
from foundry.db import github_sync, runs
from foundry.db.database import Database
from foundry.domain import events, trackers, triggers
from foundry.services import reconciler
from foundry.services.delivery import Delivery
from foundry.services.intake import Intake

log = logs.get("foundry.github_issues_reconciler")
Clock = Callable[[], datetime]
# `foundry_runs.issue_id` holds 64 characters (GitHub's node ids are far shorter).
MAX_NODE_ID = 64
# Runs a label started (by a webhook, which records the label's id, or by this reconciler, which
# cannot learn it): only these stop when the label goes. A `/foundry start` run never had it.
BY_LABEL = frozenset({"label", "reconciler"})


class GitHubIssuesReconciler:
    def __init__(
        self,
        db: Database,
        *,
        github: GitHubIssuesClient | None,
        intake: Intake,
        repositories: Sequence[str],
        label: str,
        clock: Clock,
        interval: timedelta,
    ) -> None:
        self._db = db
        self._github = github
        self._intake = intake
        self._repositories = tuple(repositories)
        self._label = label
        self._clock = clock
        self._interval = interval
        self._last = clock()

    def reconcile_once(self) -> int:
        """Open the runs missed deliveries would have opened, stop the ones they would have
        stopped; how many were opened or stopped."""
        now = self._clock()
        github = self._github
        if github is None or not self._repositories or now - self._last < self._interval:
            return 0
        self._last = now
        done = 0
        try:
            for changed in self._pass(github, now):
                done += changed
        except OutboundError as exc:  # GitHub is down, limiting us or refusing our token
            log.warning("github_issues_reconciler.pass_ended", error=str(exc), retryable=exc.retryable)
        return done

    def _pass(self, github: GitHubIssuesClient, now: datetime) -> Iterator[int]:
        for repository in self._repositories:
            yield from self._open_missing(github, repository, now)
        active = self._db.transaction_sync(
            lambda tx: github_sync.active_runs(tx, limit=reconciler.MAX_FOLLOWED, tracker=trackers.GITHUB),
            write=False,
        )
        for run in active:
            yield self._follow(github, run, now)

    def _open_missing(self, github: GitHubIssuesClient, repository: str, now: datetime) -> Iterator[int]:
        try:
            issues = github.labelled_issues(repository, self._label, since=None)
        except OutboundError as exc:
            if exc.retryable:
                raise
            # This repository's listing is refused (gone, or not ours to read): the others go on.
            log.error("github_issues_reconciler.listing_refused", repository=repository, error=str(exc))
            return
        wanted = [i for i in issues if 0 < len(i.node_id) <= MAX_NODE_ID]
        known = self._db.transaction_sync(
            lambda tx: runs.issues_with_runs(tx, [i.node_id for i in wanted], trackers.GITHUB), write=False
        )
        for issue in wanted:
            if issue.node_id not in known:
                yield self._open(issue, now)

    def _open(self, issue: Issue, now: datetime) -> int:
        key = f"{issue.repository}#{issue.number}"
        ref = events.IssueRef(issue.node_id, key, issue.title, issue.body, issue.html_url, trackers.GITHUB)
        # The label's id is recorded, so that an `unlabeled` webhook later stops this run too.
        label_id = issue.label_id(self._label)
        intent = triggers.OpenRun(ref, "reconciler", reconciler.RECONCILER, label_id=label_id)
        # The delivery key is the issue: a reconciliation repeated, here or elsewhere, is a duplicate.
        delivery = Delivery("github", f"reconcile:{issue.node_id}", "Reconcile.issue", now)
        result = self._intake.handle_sync(delivery, intent)
        log.info("github_issues_reconciler.issue", issue=key, outcome=result.outcome, run_id=result.run_id)
        return 1 if result.outcome == "opened" else 0

    def _follow(self, github: GitHubIssuesClient, run: Mapping[str, Any], now: datetime) -> int:
        address = trackers.github_issue(run["issue_key"])
        if address is None:
            log.error("github_issues_reconciler.unreadable_key", run_id=run["id"], issue=run["issue_key"])
            return 0
        try:
            issue: Issue | None = github.issue(*address)
        except github_issues.IssueGone:
            issue = None
        intent = why_stop(run, issue, self._label)
        if intent is None:
            return 0
        delivery = Delivery("github", f"reconcile:stop:{run['id']}", "Reconcile.stop", now)
        result = self._intake.handle_sync(delivery, intent)
        log.info(
            "github_issues_reconciler.stop", run_id=run["id"], reason=intent.reason, outcome=result.outcome
        )
        return 1 if result.outcome == "cancelled" else 0


def why_stop(run: Mapping[str, Any], issue: Issue | None, label: str) -> triggers.StopRun | None:
    """The stop a missed delivery about the run's issue would have asked for; None if none."""
    actor = reconciler.RECONCILER
    if issue is None:
        return triggers.StopRun(run["issue_id"], "issue deleted", actor, tracker=trackers.GITHUB)
    if issue.state == "closed":
        if issue.state_reason in ("not_planned", "duplicate"):
            return triggers.StopRun(run["issue_id"], "issue canceled", actor, tracker=trackers.GITHUB)
        if run["pr_number"] is not None:
            # Left to its PR, and intake is not asked: a spared stop would still use up the key
            # `reconcile:stop:<run id>`, and a later deletion could no longer stop the run.
            return None
        # Completed (or closed without a reason): a run that got its PR meanwhile is still spared.
        return triggers.StopRun(
            run["issue_id"], "issue completed", actor, tracker=trackers.GITHUB, spare_with_pr=True
        )
    labelled = label.casefold() in {name.casefold() for name in issue.labels}
    if labelled or run["trigger"] not in BY_LABEL:
        return None
    known = run["trigger_label_id"]
    removed = None if known is None else frozenset({known})
    return triggers.StopRun(run["issue_id"], "trigger label removed", actor, removed, trackers.GITHUB)
