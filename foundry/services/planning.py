"""Planning a run: readiness, a plan, the policy gate, and the effects that ask for approval.

The worker claims a run in `intake` (or one in `planning` whose worker died) under a lease,
does the slow part — possibly a model call — while heartbeating, and finishes in one fenced
transaction: the transition, the plan, and its outbox rows. A worker that lost its lease
writes nothing, so a crash at any point leaves one plan comment and one Slack message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.linear import LinearClient
from foundry.clients.models import Planner
from foundry.db import leases, outbox, runs, schema
from foundry.db.database import Database
from foundry.db.outbox import Effect
from foundry.db.tx import Tx
from foundry.domain import policy, readiness, routing, templates, trackers
from foundry.domain.plans import IssueForPlanning, Plan
from foundry.domain.statuses import RunStatus
from foundry.errors import StorageError
from foundry.services import effects

log = logs.get("foundry.planning")
# A run to plan, oldest first; one waiting for a person (which repository?) is not planned
# until they answer.
_CLAIM = leases.Claim(
    schema.runs,
    [schema.runs.c.status.in_([RunStatus.INTAKE, RunStatus.PLANNING]), schema.runs.c.awaiting.is_(None)],
    order_by=schema.runs.c.created_at,
)
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    kind: str
    data: dict[str, Any]
    effects: list[Effect]
    values: dict[str, Any]
    # The repository decided now, and why ("team ENG → acme/app"): on the timeline as `routed`.
    routed: routing.Routed | None = None


class Planning:
    def __init__(
        self,
        db: Database,
        *,
        rules: policy.Policy,
        model: Planner | None,
        linear: LinearClient | None = None,
        slack_channel: str | None,
        owner: str,
        lease: timedelta,
        clock: Clock,
        repositories: routing.Repositories | None = None,
    ) -> None:
        self._db = db
        self._rules = rules
        self._repositories = repositories or routing.Repositories()
        self._model = model
        self._linear = linear
        self._channel = slack_channel
        self._owner = owner
        self._ttl = lease
        self._clock = clock

    def plan_once(self) -> int:
        """Plan one run if one is waiting; the number planned (0 or 1)."""
        claimed = self.claim()
        if claimed is None:
            return 0
        lease, run = claimed
        with Heartbeat(self._db, lease, ttl=self._ttl, clock=self._clock):
            outcome = self.decide(run)
        finished = self.finish(lease, run, outcome)
        log.info("run.planned" if finished else "run.lease_lost", run_id=run["id"], status=outcome.status)
        return 1

    def claim(self) -> tuple[leases.Lease, Mapping[str, Any]] | None:
        """Lease the oldest run waiting to be planned (or abandoned mid-planning)."""
        return self._db.transaction_sync(self._claim)

    def finish(self, lease: leases.Lease, run: Mapping[str, Any], outcome: Outcome) -> bool:
        """Write the outcome if the lease is still ours; False (and nothing written) if not."""
        return self._db.transaction_sync(lambda tx: self._finish(tx, lease, run, outcome))

    async def _claim(self, tx: Tx) -> tuple[leases.Lease, Mapping[str, Any]] | None:
        now = self._clock()
        claimed = await _CLAIM(tx, owner=self._owner, now=now, ttl=self._ttl)
        if claimed is None:
            return None
        lease, run = claimed
        if run["status"] == RunStatus.INTAKE:
            event = runs.NewEvent("planning", now, "foundry", {"worker": self._owner})
            await runs.transition(
                tx, run["id"], expected=RunStatus.INTAKE, new=RunStatus.PLANNING, event=event, lease=lease
            )
        return lease, run

    def decide(self, run: Mapping[str, Any]) -> Outcome:
        """Readiness, plan and policy for `run`: slow (a model may be asked), writes nothing."""
        description = self._description(run)
        criteria = readiness.acceptance_criteria(description)
        if not criteria:
            drafted = readiness.draft_criteria(run["title"], description)
            comment = effects.issue_comment(run, "clarification", templates.clarification_comment(drafted))
            return Outcome(
                RunStatus.NEEDS_CLARIFICATION,
                "needs_clarification",
                {"drafted_criteria": list(drafted)},
                [comment],
                {"description": description},
            )
        routed = self._route(run)
        if routed is not None and routed.repository is None:
            return _ask_for_repository(run, routed, description)
        repository = routed.repository if routed is not None else None
        issue = IssueForPlanning(run["issue_key"], run["title"], description, criteria)
        plan = self._plan(issue)
        rules = repository.policy if repository is not None and repository.policy is not None else self._rules
        verdict = policy.gate(plan.paths, rules)
        values = {
            "plan": plan.as_dict(),
            "required_roles": list(verdict.required_roles),
            "description": description,
            "repository": repository.name if repository is not None else None,
        }
        if verdict.blocked:
            comment = effects.issue_comment(run, "blocked", templates.blocked_comment(verdict.forbidden))
            forbidden = {"forbidden": list(verdict.forbidden)}
            return Outcome(RunStatus.BLOCKED, "blocked", forbidden, [comment], values, routed)
        where = routed.reason if routed is not None else None
        posted = effects.plan_ready(run, plan, verdict.required_roles, self._channel, repository=where)
        data = {
            "backend": plan.backend,
            "required_roles": list(verdict.required_roles),
            "notes": list(plan.notes),
        }
        return Outcome(RunStatus.AWAITING_APPROVAL, "planned", data, posted, values, routed)

    def _route(self, run: Mapping[str, Any]) -> routing.Routed | None:
        """Where the run works: None with routing off; a repository and why; or (no repository)
        the question for a person. A repository already chosen is kept. A GitHub issue's run
        works in the issue's own repository, with that repository's policy and agent when it
        is configured."""
        if run["tracker"] == trackers.GITHUB:
            name = run["issue_key"].partition("#")[0]
            configured = self._repositories.named(name)
            return routing.Routed(configured or routing.Repository(name), f"the issue's repository → {name}")
        if not self._repositories.enabled:
            return None
        chosen = self._repositories.named(run["repository"])
        if chosen is not None:
            return routing.Routed(chosen, f"chosen → {chosen.name}")
        return self._repositories.route(self._facts(run))

    def _facts(self, run: Mapping[str, Any]) -> routing.IssueFacts:
        """The issue's team, labels and project, from Linear when it can be asked (a retryable
        failure propagates: planned again later); else the team its identifier names."""
        fallback = routing.IssueFacts(routing.team_of(run["issue_key"]))
        if self._linear is None or run["tracker"] != trackers.LINEAR:
            return fallback
        try:
            return self._linear.issue_facts(run["linear_issue_id"])
        except OutboundError as exc:
            if exc.retryable:
                raise
            log.warning("issue.facts_unreadable", run_id=run["id"], error=str(exc))
            return fallback

    def _description(self, run: Mapping[str, Any]) -> str:
        """The issue's text. A run opened by a comment has none yet: ask Linear, when we can.

        A retryable failure propagates: the lease lapses and the run is planned again later,
        rather than ending `needs_clarification` over a network blip."""
        if run["description"] is not None or self._linear is None or run["tracker"] != trackers.LINEAR:
            return str(run["description"] or "")
        try:
            return str(self._linear.issue(run["linear_issue_id"]).get("description") or "")
        except OutboundError as exc:
            if exc.retryable:
                raise
            log.warning("issue.unreadable", run_id=run["id"], error=str(exc))
            return ""

    def _plan(self, issue: IssueForPlanning) -> Plan:
        if self._model is None:
            return templates.plan(issue)
        try:
            return self._model.plan(issue)
        except OutboundError as exc:
            log.warning("planner.fallback", error=str(exc))
            return templates.plan(
                issue, notes=(f"The model planner failed ({exc}); this is the template plan.",)
            )

    async def _finish(self, tx: Tx, lease: leases.Lease, run: Mapping[str, Any], outcome: Outcome) -> bool:
        now = self._clock()
        event = runs.NewEvent(outcome.kind, now, "foundry", outcome.data)
        if outcome.status == RunStatus.PLANNING:  # waiting for a person: no transition
            moved = await runs.fenced_update(tx, run["id"], lease, outcome.values, event)
        else:
            moved = await runs.transition(
                tx,
                run["id"],
                expected=RunStatus.PLANNING,
                new=outcome.status,
                event=event,
                lease=lease,
                values=outcome.values,
            )
        if not moved:
            return False  # the lease was lost: whoever holds it now does the work, once
        if outcome.routed is not None and outcome.routed.repository is not None:
            said = {"repository": outcome.routed.repository.name, "reason": outcome.routed.reason}
            await runs.append_event(tx, run["id"], runs.NewEvent("routed", now, "foundry", said))
        for effect in outcome.effects:
            await outbox.enqueue(tx, effect, now=now)
        await leases.release(tx, schema.runs, lease, now=now)
        return True


def _ask_for_repository(run: Mapping[str, Any], routed: routing.Routed, description: str) -> Outcome:
    """No repository, or several: the run waits in planning for `/foundry repo owner/name`."""
    candidates = ", ".join(f"`{name}`" for name in routed.candidates) or "none configured"
    body = (
        f"**Which repository should Foundry work in?** It did not guess: {routed.reason}. "
        f"Candidates: {candidates}. Answer with a comment `/foundry repo owner/name`."
    )
    comment = effects.issue_comment(run, "repository_question", body)
    data = {"reason": routed.reason, "candidates": list(routed.candidates)}
    values = {"awaiting": "repository", "description": description}
    return Outcome(RunStatus.PLANNING, "repository_needed", data, [comment], values)


class Heartbeat:
    """Extends a lease at a third of its length while slow work runs, in a background thread."""

    def __init__(self, db: Database, lease: leases.Lease, *, ttl: timedelta, clock: Clock) -> None:
        self._db, self._lease, self._ttl, self._clock = db, lease, ttl, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="foundry-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        table = schema.metadata.tables[self._lease.table]
        while not self._stop.wait(self._ttl.total_seconds() / 3):
            try:
                held = self._db.transaction_sync(
                    lambda tx: leases.heartbeat(tx, table, self._lease, now=self._clock(), ttl=self._ttl)
                )
            except StorageError as exc:  # keep beating: the database may come back in time
                log.warning("lease.heartbeat_failed", row_id=self._lease.row_id, error=str(exc))
                continue
            if not held:
                log.warning("lease.lost", table=self._lease.table, row_id=self._lease.row_id)
                return
