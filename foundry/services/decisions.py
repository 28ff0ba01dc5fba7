"""Approve, reject or stop a run — from Slack, Linear, the API or the CLI — exactly once.

A decision is a compare-and-set transition on the run, taken under the run's row lock so that
concurrent clicks queue rather than race. Ten clicks give one `approved` and one event; a
decider who is not an approver is refused, and the refusal is recorded on the timeline. When a
run's sensitive areas need several roles, approvers' roles are counted together: each partial
approval is recorded, and the one that completes the set moves the run; the same approver's
approval adding no role is not recorded again.

A decision from a Linear comment may arrive twice — by webhook (keyed by its Linear-Delivery)
and by the reconciler (keyed by the comment id). The transition is compare-and-set, so it moves
the run once either way; a decision given its comment id records it in the event's data and is
skipped when that comment was already applied.
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
    tx: Tx,
    run_id: str,
    decision: Decision,
    decider: Decider,
    *,
    at: datetime,
    delivery_id: str | None = None,
    comment_id: str | None = None,
) -> DecisionResult | None:
    """Apply one decision; None when there is no such run. `comment_id`: the Linear comment
    that says it, applied at most once."""
    run = await runs.lock(tx, run_id)
    if run is None:
        return None
    if comment_id is not None and await _applied(tx, run_id, comment_id):
        return DecisionResult(run_id, False, run["status"], f"comment {comment_id} was already applied")
    said = {"comment_id": comment_id} if comment_id is not None else {}
    if decider.approver is None and not decider.all_roles:
        reason = f"{decider.actor} is not an approver"
        await _record(
            tx, run, "decision_refused", decider, at, delivery_id, decision=decision, reason=reason, **said
        )
        return DecisionResult(run_id, False, run["status"], reason, refused=True)
    if decision is Decision.APPROVE:
        missing = await _missing_roles(tx, run, decider)
        if missing and run["status"] == RunStatus.AWAITING_APPROVAL:
            return await _partial(tx, run, decider, at, delivery_id, missing, said)
    expected = run["status"] if decision is Decision.STOP else RunStatus.AWAITING_APPROVAL
    new = RunStatus.STOPPED if decision is Decision.STOP else RunStatus(OUTCOME[decision])
    event = runs.NewEvent(OUTCOME[decision], at, decider.actor, {"via": decider.via, **said}, delivery_id)
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
    said: Mapping[str, Any],
) -> DecisionResult:
    assert decider.approver is not None
    useful = sorted(set(decider.approver.roles) & set(run["required_roles"] or []))
    reason = "needs an approver with: " + ", ".join(missing)
    kind = "approval_partial" if useful else "decision_refused"
    if not await _said_before(tx, run["id"], kind, decider.actor, useful):
        await _record(
            tx,
            run,
            kind,
            decider,
            at,
            delivery_id,
            decision=Decision.APPROVE,
            reason=reason,
            roles=useful,
            **said,
        )
    return DecisionResult(run["id"], False, run["status"], reason, refused=not useful)


async def _said_before(tx: Tx, run_id: str, kind: str, actor: str, roles: list[str]) -> bool:
    """The same approver's approval, with the same roles, is already on the timeline."""
    return any(
        e["actor"] == actor and sorted(e["data"].get("roles", [])) == roles
        for e in await runs.events_of_kind(tx, run_id, kind)
    )


async def _applied(tx: Tx, run_id: str, comment_id: str) -> bool:
    """A decision from this Linear comment is already on the run's timeline."""
    return any(e["data"].get("comment_id") == comment_id for e in await runs.timeline(tx, run_id))


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
