"""The reconciler: issues carrying the trigger label that never got a run (a webhook was missed)
are opened through the very same guarded intake, so it can never open a second run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from foundry import logs
from foundry.clients.linear import LinearClient
from foundry.db import runs
from foundry.db.database import Database
from foundry.domain import events, triggers
from foundry.services.delivery import Delivery
from foundry.services.intake import Intake

log = logs.get("foundry.reconciler")
# Missed webhooks are rare and Linear's API is rate limited: once every five minutes is plenty.
INTERVAL = timedelta(minutes=5)


class Reconciler:
    def __init__(
        self,
        db: Database,
        *,
        linear: LinearClient | None,
        intake: Intake,
        label: str,
        clock: Callable[[], datetime],
        interval: timedelta = INTERVAL,
    ) -> None:
        self._db = db
        self._linear = linear
        self._intake = intake
        self._label = label
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

    def _open(self, issue: dict[str, str], now: datetime) -> int:
        ref = events.IssueRef(
            issue["id"],
            issue.get("identifier") or "",
            issue.get("title") or "",
            issue.get("description"),
            issue.get("url"),
        )
        intent = triggers.OpenRun(ref, "reconciler", events.Actor(name="reconciler"))
        # The delivery key is the issue: a reconciliation repeated, here or elsewhere, is a duplicate.
        delivery = Delivery("linear", f"reconcile:{issue['id']}", "Reconcile.issue", now)
        result = self._intake.handle_sync(delivery, intent)
        log.info("reconciler.issue", issue=ref.identifier, outcome=result.outcome, run_id=result.run_id)
        return 1 if result.outcome == "opened" else 0
