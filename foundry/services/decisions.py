"""Approve, reject or stop a run — from Slack, Linear, the API or the CLI — exactly once.

A decision is a compare-and-set transition on the run, taken under the run's row lock so that
concurrent clicks queue rather than race. Ten clicks give one `approved` and one event; a
decider who is not an approver is refused, and the refusal is recorded on the timeline. When a
run's sensitive areas need several roles, approvers' roles are counted together: each partial
approval is recorded, and the one that completes the set moves the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from foundry.db import outbox, runs
from foundry.db.tx import Tx
from foundry.domain import approvals
from foundry.domain.statuses import RunStatus
from foundry.domain.triggers import Decision
from foundry.services import effects

OUTCOME = {Decision.APPROVE: "approved", Decision.REJECT: "rejected", Decision.STOP: "stopped"}


@dataclass(frozen=True)
class Decider:
    actor: str
    via: str
    # None: the decider is not an approver and is refused. The operator API and CLI act as an
    # approver holding every role (the bearer token is an administrator's credential).
    approver: approvals.Approver | None
    all_roles: bool = False


@dataclass(frozen=True)
class DecisionResult:
    run_id: str
    changed: bool
    status: str
    reason: str | None = None
    refused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "changed": self.changed, "status": self.status, "reason": self.reason}


async def decide(
    tx: Tx, run_id: str, decision: Decision, decider: Decider, *, at: datetime, delivery_id: str | None = None
) -> DecisionResult | None:
    """Apply one decision; None when there is no such run."""
    run = await runs.lock(tx, run_id)
    if run is None:
        return None
    if decider.approver is None and not decider.all_roles:
        reason = f"{decider.actor} is not an approver"
        await _record(tx, run, "decision_refused", decider, at, delivery_id, decision=decision, reason=reason)
        return DecisionResult(run_id, False, run["status"], reason, refused=True)
    if decision is Decision.APPROVE:
        missing = await _missing_roles(tx, run, decider)
        if missing and run["status"] == RunStatus.AWAITING_APPROVAL:
            return await _partial(tx, run, decider, at, delivery_id, missing)
    expected = run["status"] if decision is Decision.STOP else RunStatus.AWAITING_APPROVAL
    new = RunStatus.STOPPED if decision is Decision.STOP else RunStatus(OUTCOME[decision])
    event = runs.NewEvent(OUTCOME[decision], at, decider.actor, {"via": decider.via}, delivery_id)
    if run["status"] not in _ACTIVE or not await runs.transition(
        tx, run_id, expected=expected, new=new, event=event
    ):
        return DecisionResult(run_id, False, run["status"], f"run is {run['status']}, not {expected}")
    await _tell(tx, run, OUTCOME[decision], decider.actor, at)
    if decision is Decision.STOP:
        await effects.after_stop(tx, run, at)
    return DecisionResult(run_id, True, new)


_ACTIVE = {
    s.value
    for s in RunStatus
    if s.value not in {"needs_clarification", "blocked", "rejected", "stopped", "failed", "closed", "merged"}
}


async def _missing_roles(tx: Tx, run: Mapping[str, Any], decider: Decider) -> tuple[str, ...]:
    if decider.all_roles:
        return ()
    assert decider.approver is not None
    granted = set(decider.approver.roles)
    for event in await runs.events_of_kind(tx, run["id"], "approval_partial"):
        granted |= set(event["data"].get("roles", []))
    return approvals.missing_roles(run["required_roles"] or [], granted)


async def _partial(
    tx: Tx,
    run: Mapping[str, Any],
    decider: Decider,
    at: datetime,
    delivery_id: str | None,
    missing: tuple[str, ...],
) -> DecisionResult:
    assert decider.approver is not None
    useful = sorted(set(decider.approver.roles) & set(run["required_roles"] or []))
    reason = "needs an approver with: " + ", ".join(missing)
    kind = "approval_partial" if useful else "decision_refused"
    await _record(
        tx, run, kind, decider, at, delivery_id, decision=Decision.APPROVE, reason=reason, roles=useful
    )
    return DecisionResult(run["id"], False, run["status"], reason, refused=not useful)


async def _record(
    tx: Tx,
    run: Mapping[str, Any],
    kind: str,
    decider: Decider,
    at: datetime,
    delivery_id: str | None,
    **data: Any,
) -> None:
    data = {"via": decider.via, **data}
    await runs.append_event(tx, run["id"], runs.NewEvent(kind, at, decider.actor, data, delivery_id))


async def _tell(tx: Tx, run: Mapping[str, Any], outcome: str, actor: str, at: datetime) -> None:
    asked_in_slack = await outbox.find(tx, effects.approval_message_key(run["id"])) is not None
    for effect in effects.decided(run, outcome, actor, slack=asked_in_slack):
        await outbox.enqueue(tx, effect, now=at)
