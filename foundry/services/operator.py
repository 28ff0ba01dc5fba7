"""What an operator may do to a run, from the API or the CLI: decide it, or retry it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from foundry.db import runs
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain.statuses import RunStatus, is_active
from foundry.domain.triggers import Decision
from foundry.errors import Conflict, NotFound
from foundry.services import decisions

Clock = Callable[[], datetime]
# An operator's retry is deliberate: the runaway guard is for webhooks, not people.
_NO_GUARD = 1_000_000


class Operator:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def decide(self, run_id: str, decision: Decision, actor: str, via: str = "api") -> dict[str, Any]:
        return await self._db.transaction(lambda tx: self._decide(tx, run_id, decision, actor, via))

    def decide_sync(self, run_id: str, decision: Decision, actor: str, via: str = "cli") -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: self._decide(tx, run_id, decision, actor, via))

    async def retry(self, run_id: str, actor: str) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: self._retry(tx, run_id, actor))

    def retry_sync(self, run_id: str, actor: str) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: self._retry(tx, run_id, actor))

    async def _decide(self, tx: Tx, run_id: str, decision: Decision, actor: str, via: str) -> dict[str, Any]:
        decider = decisions.Decider(actor, via, approver=None, all_roles=True)
        result = await decisions.decide(tx, run_id, decision, decider, at=self._clock())
        if result is None:
            raise NotFound(f"No run has id {run_id}.")
        return result.as_dict()

    async def _retry(self, tx: Tx, run_id: str, actor: str) -> dict[str, Any]:
        old = await runs.get(tx, run_id)
        if old is None:
            raise NotFound(f"No run has id {run_id}.")
        if is_active(old["status"]):
            raise Conflict(f"Run {run_id} is still {old['status']}; only a finished run can be retried.")
        now = self._clock()
        new = runs.NewRun(
            str(uuid.uuid4()),
            old["issue_id"],
            old["issue_key"],
            old["title"],
            RunStatus.INTAKE,
            "retry",
            now,
            old["description"],
            old["issue_url"],
            old["trigger_label_id"],
            old["agent_session_id"],
            old["tracker"],
        )
        opened = runs.NewEvent("opened", now, actor, {"trigger": "retry", "retried_from": run_id})
        if not await runs.insert_unless_active(tx, new, opened, since=now, max_recent=_NO_GUARD):
            active = await runs.active_id(tx, old["issue_id"], old["tracker"])
            raise Conflict(f"Issue {old['issue_key']} already has an active run {active}.")
        await runs.append_event(tx, run_id, runs.NewEvent("retried", now, actor, {"new_run_id": new.id}))
        return {"run_id": new.id, "retried_from": run_id, "status": RunStatus.INTAKE.value}
