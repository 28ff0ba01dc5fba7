"""Linear intake: open, stop, decide or add to a run — through the exactly-once pipeline."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from foundry.db import deliveries, runs
from foundry.db import intake as intake_store
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain import approvals, triggers
from foundry.domain.statuses import RunStatus
from foundry.services import decisions, effects
from foundry.services.delivery import Delivery, Step, ignore, process, process_sync, recorded
from foundry.services.delivery import Result as IntakeResult

__all__ = ["Delivery", "Intake", "IntakeResult"]

# `runs.max_per_issue_per_day` counts runs opened in this trailing window.
RUNAWAY_WINDOW = timedelta(days=1)


class Intake:
    def __init__(
        self, db: Database, *, approvers: tuple[approvals.Approver, ...], max_runs_per_day: int
    ) -> None:
        self._db = db
        self._approvers = approvers
        self._max_runs_per_day = max_runs_per_day

    async def handle(self, delivery: Delivery, intent: triggers.Intent) -> IntakeResult:
        return await process(self._db, delivery, self._step_for(intent))

    def handle_sync(self, delivery: Delivery, intent: triggers.Intent) -> IntakeResult:
        return process_sync(self._db, delivery, self._step_for(intent))

    def _step_for(self, intent: triggers.Intent) -> Step:
        if isinstance(intent, triggers.OpenRun):
            return lambda tx, d: self._open(tx, d, intent)
        if isinstance(intent, triggers.StopRun):
            return lambda tx, d: _stop(tx, d, intent)
        if isinstance(intent, triggers.Decide | triggers.SlackDecide):
            return lambda tx, d: self._decide(tx, d, intent)
        if isinstance(intent, triggers.AddPrompt):
            return lambda tx, d: _add_prompt(tx, d, intent)
        return ignore(intent.reason)

    async def _open(self, tx: Tx, d: deliveries.NewDelivery, intent: triggers.OpenRun) -> IntakeResult:
        now = d.received_at
        since = now - RUNAWAY_WINDOW
        opened = runs.NewEvent(
            "opened", now, intent.actor.describe(), {"trigger": intent.trigger, "event": d.event}, d.id
        )
        opening = await intake_store.open_or_attach(
            tx, _new_run(intent, now), opened, d, since=since, max_recent=self._max_runs_per_day
        )
        if opening is not None:
            return IntakeResult("opened" if opening.opened else "attached", opening.run_id)
        guard = f"runaway guard: {self._max_runs_per_day} runs for this issue in the last 24 hours"
        return await recorded(tx, d, IntakeResult("ignored", reason=guard))

    async def _decide(
        self, tx: Tx, d: deliveries.NewDelivery, intent: triggers.Decide | triggers.SlackDecide
    ) -> IntakeResult:
        if isinstance(intent, triggers.SlackDecide):
            run_id: str | None = intent.run_id
            actor = intent.slack_user_name or intent.slack_user_id
            decider = decisions.Decider(
                actor, "slack", approvals.by_slack_user(self._approvers, intent.slack_user_id)
            )
        else:
            run_id = await runs.active_id(tx, intent.issue_id)
            approver = approvals.by_linear_email(self._approvers, intent.actor.email)
            decider = decisions.Decider(intent.actor.describe(), "linear", approver)
        decided = None
        if run_id is not None:
            decided = await decisions.decide(
                tx, run_id, intent.decision, decider, at=d.received_at, delivery_id=d.id
            )
        if decided is None:
            return await recorded(tx, d, IntakeResult("ignored", reason="no active run to decide"))
        result = IntakeResult("decided", decided.run_id, reason=decided.reason, changed=decided.changed)
        return await recorded(tx, d, result, refused=decided.refused)


def _new_run(intent: triggers.OpenRun, now: datetime) -> runs.NewRun:
    issue = intent.issue
    return runs.NewRun(
        id=str(uuid.uuid4()),
        linear_issue_id=issue.id,
        linear_identifier=issue.identifier,
        title=issue.title,
        status=RunStatus.INTAKE,
        trigger=intent.trigger,
        created_at=now,
        description=issue.description,
        issue_url=issue.url,
        trigger_label_id=intent.label_id,
        agent_session_id=intent.agent_session_id,
    )


async def _stop(tx: Tx, d: deliveries.NewDelivery, intent: triggers.StopRun) -> IntakeResult:
    event = runs.NewEvent("stopped", d.received_at, intent.actor.describe(), {"reason": intent.reason}, d.id)
    stopped = await runs.stop_active(tx, intent.issue_id, event, label_ids=intent.removed_label_ids)
    if stopped is None:
        return await recorded(tx, d, IntakeResult("ignored", reason="no active run to stop"))
    await effects.after_stop(tx, stopped, d.received_at)
    return await recorded(tx, d, IntakeResult("cancelled", stopped["id"]))


async def _add_prompt(tx: Tx, d: deliveries.NewDelivery, intent: triggers.AddPrompt) -> IntakeResult:
    run_id = await runs.active_id(tx, intent.issue_id)
    if run_id is None:
        return await recorded(tx, d, IntakeResult("ignored", reason="no active run for this prompt"))
    await runs.append_event(
        tx,
        run_id,
        runs.NewEvent(
            "prompt",
            d.received_at,
            intent.actor.describe(),
            {"prompt": intent.prompt, "agent_session_id": intent.agent_session_id},
            d.id,
        ),
    )
    return await recorded(tx, d, IntakeResult("updated", run_id))
