"""The Linear reconciler: what a missed Linear webhook would have done, done through the same
guarded steps — so it can never be done twice.

`Reconciler` opens runs for issues carrying the trigger label that never got one, through the
very same intake, so it can never open a second run. `IssueFollower` looks at each active run's
issue: one canceled, deleted (or archived) or stripped of the trigger label stops its run —
intake's own StopRun, under the delivery key `reconcile:stop:<run id>`, so it happens once. On a
run awaiting approval, an approver's `/foundry approve|reject|stop` comment made since the run
began to wait is decided under the key `reconcile:comment:<comment id>`; the decision itself
skips a comment already applied, and its transition is compare-and-set, so a comment that also
came by webhook decides once, in either order. Each looks at most every
`reconcile.linear_interval_s`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.linear import IssueComment, IssueState, LinearClient
from foundry.db import deliveries, github_sync, runs
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain import approvals, events, trackers, triggers
from foundry.domain.statuses import RunStatus
from foundry.services import decisions
from foundry.services.delivery import Delivery, Result, process_sync, recorded
from foundry.services.intake import Intake

log = logs.get("foundry.reconciler")
Clock = Callable[[], datetime]
RECONCILER = events.Actor(name="reconciler")
# A bound on one pass, far above the active runs of any team: one pass stays finite.
MAX_FOLLOWED = 500


class Reconciler:
    def __init__(
        self,
        db: Database,
        *,
        linear: LinearClient | None,
        intake: Intake,
        label: str,
        clock: Clock,
        interval: timedelta,
        label_id: str | None = None,
    ) -> None:
        self._db = db
        self._linear = linear
        self._intake = intake
        self._label = label
        self._label_id = label_id
        self._clock = clock
        self._interval = interval
        self._last: datetime | None = None

    def reconcile_once(self) -> int:
        """Open runs for labelled issues that have none; the number opened."""
        now = self._clock()
        if self._linear is None or (self._last is not None and now - self._last < self._interval):
            return 0
        self._last = now
        issues = self._linear.issues_with_label(self._label)
        known = self._db.transaction_sync(
            lambda tx: runs.issues_with_runs(tx, [i["id"] for i in issues]), write=False
        )
        return sum(self._open(issue, now) for issue in issues if issue["id"] not in known)

    def _open(self, issue: dict[str, Any], now: datetime) -> int:
        ref = events.IssueRef(
            issue["id"],
            issue.get("identifier") or "",
            issue.get("title") or "",
            issue.get("description"),
            issue.get("url"),
        )
        # The label's id is recorded, so that its removal later stops this run, as for a webhook's.
        intent = triggers.OpenRun(ref, "reconciler", RECONCILER, label_id=self._trigger_label(issue))
        # The delivery key is the issue: a reconciliation repeated, here or elsewhere, is a duplicate.
        delivery = Delivery("linear", f"reconcile:{issue['id']}", "Reconcile.issue", now)
        result = self._intake.handle_sync(delivery, intent)
        log.info("reconciler.issue", issue=ref.identifier, outcome=result.outcome, run_id=result.run_id)
        return 1 if result.outcome == "opened" else 0

    def _trigger_label(self, issue: Mapping[str, Any]) -> str | None:
        labels = issue.get("labels")
        nodes = labels.get("nodes") if isinstance(labels, dict) else None
        for label in nodes if isinstance(nodes, list) else []:
            if not isinstance(label, dict) or not isinstance(label.get("id"), str):
                continue
            if (
                label["id"] == self._label_id
                or str(label.get("name", "")).casefold() == self._label.casefold()
            ):
                return str(label["id"])
        return None


class IssueFollower:
    def __init__(
        self,
        db: Database,
        *,
        linear: LinearClient | None,
        intake: Intake,
        rules: triggers.TriggerRules,
        approvers: tuple[approvals.Approver, ...],
        clock: Clock,
        interval: timedelta,
    ) -> None:
        self._db = db
        self._linear = linear
        self._intake = intake
        self._rules = rules
        self._approvers = approvers
        self._clock = clock
        self._interval = interval
        # The first look comes one interval after the worker starts, not at once: a fleet of
        # workers restarted together (a deploy) would otherwise ask Linear about every active
        # run at the same moment.
        self._last = clock()

    def follow_once(self) -> int:
        """Catch up on the issues of active runs; the number of runs stopped or decided."""
        now = self._clock()
        if self._linear is None or now - self._last < self._interval:
            return 0
        self._last = now
        active = self._db.transaction_sync(
            lambda tx: github_sync.active_runs(tx, limit=MAX_FOLLOWED, tracker=trackers.LINEAR), write=False
        )
        done = 0
        for run in active:
            try:
                done += self._follow(self._linear, run, now)
            except OutboundError as exc:  # Linear is down or limiting us: the rest wait a pass
                log.warning("reconciler.linear_failed", run_id=run["id"], error=str(exc))
                break
        return done

    def _follow(self, linear: LinearClient, run: Mapping[str, Any], now: datetime) -> int:
        since = None
        if run["status"] == RunStatus.AWAITING_APPROVAL:
            since = self._db.transaction_sync(lambda tx: _awaiting_since(tx, run), write=False)
        issue = linear.issue_state(run["linear_issue_id"], comments_since=since)
        why = why_stop(run, issue)
        if why is not None:
            return self._stop(run, *why, now=now)
        if issue is None or since is None:
            return 0
        said = sorted(
            (c for c in issue.comments if c.created_at is not None and c.created_at >= since),
            key=lambda c: (c.created_at, c.id),
        )
        return sum(self._decide(run, comment, now) for comment in said)

    def _stop(
        self, run: Mapping[str, Any], reason: str, label_ids: frozenset[str] | None, *, now: datetime
    ) -> int:
        intent = triggers.StopRun(run["linear_issue_id"], reason, RECONCILER, removed_label_ids=label_ids)
        delivery = Delivery("linear", f"reconcile:stop:{run['id']}", "Reconcile.stop", now)
        result = self._intake.handle_sync(delivery, intent)
        log.info("reconciler.stop", run_id=run["id"], reason=reason, outcome=result.outcome)
        return 1 if result.outcome == "cancelled" else 0

    def _decide(self, run: Mapping[str, Any], comment: IssueComment, now: datetime) -> int:
        event = events.CommentEvent(
            "create",
            events.IssueRef(run["linear_issue_id"], run["linear_identifier"]),
            comment.author,
            comment.body,
        )
        intent = triggers.decide(event, self._rules)
        approver = approvals.by_linear_email(self._approvers, comment.author.email)
        # Only an approver's decision is caught up; an outsider's refusal is the webhook's to record.
        if not isinstance(intent, triggers.Decide) or approver is None:
            return 0
        decider = decisions.Decider(comment.author.describe(), "linear", approver)

        async def step(tx: Tx, d: deliveries.NewDelivery) -> Result:
            decided = await decisions.decide(
                tx,
                run["id"],
                intent.decision,
                decider,
                at=d.received_at,
                delivery_id=d.id,
                comment_id=comment.id,
            )
            if decided is None:
                return await recorded(tx, d, Result("ignored", reason="no such run"))
            result = Result("decided", decided.run_id, reason=decided.reason, changed=decided.changed)
            return await recorded(tx, d, result, refused=decided.refused)

        delivery = Delivery("linear", f"reconcile:comment:{comment.id}", "Reconcile.comment", now)
        result = process_sync(self._db, delivery, step)
        log.info("reconciler.comment", run_id=run["id"], comment_id=comment.id, outcome=result.outcome)
        return 1 if result.changed else 0


def why_stop(run: Mapping[str, Any], issue: IssueState | None) -> tuple[str, frozenset[str] | None] | None:
    """Why the run's issue means the run should stop, and (for a label) which label went; or None."""
    if issue is None:
        return "issue deleted", None
    if issue.removed:
        return "issue archived or deleted", None
    if issue.state_type == "canceled":
        return "issue canceled", None
    label = run["trigger_label_id"]
    if label is not None and label not in issue.label_ids:
        return "trigger label removed", frozenset({label})
    return None


async def _awaiting_since(tx: Tx, run: Mapping[str, Any]) -> datetime:
    """When the run began to await approval: a comment before that was not a decision on its plan."""
    moved = [
        e for e in await runs.timeline(tx, run["id"]) if e["data"].get("to") == RunStatus.AWAITING_APPROVAL
    ]
    at: datetime = moved[-1]["created_at"] if moved else run["created_at"]
    return at
