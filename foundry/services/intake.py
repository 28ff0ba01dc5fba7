"""Linear intake: one delivery, one transaction, one outcome — exactly once.

The effect runs first and the delivery is recorded last, in the same transaction. If the
delivery was already recorded (a redelivery, or a concurrent copy that committed first), the
whole transaction rolls back, effect included, and the caller hears `duplicate`. A delivery
whose processing fails is therefore never marked seen, and the sender's retry still works.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.db import deliveries, runs
from foundry.db import intake as intake_store
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain import approvals, triggers
from foundry.domain.statuses import RunStatus
from foundry.services import decisions, effects

log = logs.get("foundry.intake")

# `runs.max_per_issue_per_day` counts runs opened in this trailing window.
RUNAWAY_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Delivery:
    source: str
    key: str
    event: str
    received_at: datetime


@dataclass(frozen=True)
class IntakeResult:
    outcome: str
    run_id: str | None = None
    reason: str | None = None
    changed: bool | None = None

    @property
    def ignored(self) -> bool:
        return self.outcome == "ignored"


Step = Callable[[Tx, deliveries.NewDelivery], Coroutine[Any, Any, IntakeResult]]


class Intake:
    def __init__(
        self, db: Database, *, approvers: tuple[approvals.Approver, ...], max_runs_per_day: int
    ) -> None:
        self._db = db
        self._approvers = approvers
        self._max_runs_per_day = max_runs_per_day

    async def handle(self, delivery: Delivery, intent: triggers.Intent) -> IntakeResult:
        new = deliveries.NewDelivery(
            # The event name is a label for people (its column holds 64): shorten, never fail.
            str(uuid.uuid4()),
            delivery.source,
            delivery.key,
            delivery.event[:64],
            delivery.received_at,
        )
        step = self._step_for(intent)
        try:
            result = await self._db.transaction(lambda tx: step(tx, new))
        except intake_store.AlreadyRecorded:
            result = await self._db.transaction(
                lambda tx: _duplicate(tx, delivery.source, delivery.key), write=False
            )
        log.info(
            "delivery.accepted",
            source=delivery.source,
            delivery_id=delivery.key,
            delivery_event=delivery.event,
            outcome=result.outcome,
            run_id=result.run_id,
            reason=result.reason,
        )
        return result

    def _step_for(self, intent: triggers.Intent) -> Step:
        if isinstance(intent, triggers.OpenRun):
            return lambda tx, d: self._open(tx, d, intent)
        if isinstance(intent, triggers.StopRun):
            return lambda tx, d: _stop(tx, d, intent)
        if isinstance(intent, triggers.Decide | triggers.SlackDecide):
            return lambda tx, d: self._decide(tx, d, intent)
        if isinstance(intent, triggers.AddPrompt):
            return lambda tx, d: _add_prompt(tx, d, intent)
        ignored = IntakeResult("ignored", reason=intent.reason)
        return lambda tx, d: _recorded(tx, d, ignored)

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
        return await _recorded(tx, d, IntakeResult("ignored", reason=guard))

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
            return await _recorded(tx, d, IntakeResult("ignored", reason="no active run to decide"))
        result = IntakeResult("decided", decided.run_id, reason=decided.reason, changed=decided.changed)
        return await _recorded(tx, d, result, refused=decided.refused)


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
        return await _recorded(tx, d, IntakeResult("ignored", reason="no active run to stop"))
    await effects.after_stop(tx, stopped, d.received_at)
    return await _recorded(tx, d, IntakeResult("cancelled", stopped["id"]))


async def _add_prompt(tx: Tx, d: deliveries.NewDelivery, intent: triggers.AddPrompt) -> IntakeResult:
    run_id = await runs.active_id(tx, intent.issue_id)
    if run_id is None:
        return await _recorded(tx, d, IntakeResult("ignored", reason="no active run for this prompt"))
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
    return await _recorded(tx, d, IntakeResult("updated", run_id))


async def _recorded(
    tx: Tx, d: deliveries.NewDelivery, result: IntakeResult, *, refused: bool = False
) -> IntakeResult:
    """Record the delivery with the verdict of its effect; a second copy rolls both back."""
    verdict = "refused" if refused else result.outcome
    if not await deliveries.record(tx, d, verdict=verdict, run_id=result.run_id, reason=result.reason):
        raise intake_store.AlreadyRecorded
    return result


async def _duplicate(tx: Tx, source: str, key: str) -> IntakeResult:
    seen = await deliveries.find(tx, source, key)
    return IntakeResult("duplicate", seen["run_id"] if seen else None)
