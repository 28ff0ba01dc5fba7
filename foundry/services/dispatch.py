"""Dispatch: an approved run goes to its agent, through the leased worker and the outbox.

The worker claims an `approved` run, builds the job, scans it for credentials (a job that
looks like it carries one is refused and the run `blocked`), and in one fenced transaction
moves the run to `agent_running` and writes the job to the outbox under the key
`run:<id>:dispatch:<attempt>`, which is also the `Idempotency-Key` the agent sees. A retried
send therefore never becomes a second job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.db import agents, leases, outbox, runs, schema, silence
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import secrets_scan
from foundry.domain.statuses import RunStatus
from foundry.services import effects
from foundry.services.jobs import Jobs

log = logs.get("foundry.dispatch")
# An approved run, the longest approved first.
_CLAIM = leases.Claim(
    schema.runs, [schema.runs.c.status == RunStatus.APPROVED], order_by=schema.runs.c.updated_at
)
Clock = Callable[[], datetime]


class Dispatch:
    def __init__(
        self, db: Database, *, jobs: Jobs, agent: str | None, owner: str, lease: timedelta, clock: Clock
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._agent = agent
        self._owner = owner
        self._ttl = lease
        self._clock = clock

    def dispatch_once(self) -> int:
        """Dispatch one approved run; the number dispatched (0 or 1)."""
        claimed = self._db.transaction_sync(self._claim)
        if claimed is None:
            return 0
        lease, run = claimed
        outcome = self._db.transaction_sync(lambda tx: self._dispatch(tx, lease, run))
        log.info("run.dispatch", run_id=run["id"], outcome=outcome)
        return 1

    async def _claim(self, tx: Tx) -> tuple[leases.Lease, Row] | None:
        return await _CLAIM(tx, owner=self._owner, now=self._clock(), ttl=self._ttl)

    async def _dispatch(self, tx: Tx, lease: leases.Lease, run: Row) -> str:
        repository = self._jobs.repository(run)
        wanted = (repository.agent if repository is not None else None) or self._agent
        agent = await (agents.by_name(tx, wanted) if wanted else agents.first(tx))
        if agent is None:
            # Nobody to send it to: keep the lease, so we look again when it lapses, not in a loop.
            return "no agent registered"
        now = self._clock()
        attempt = int(run["attempt"]) + 1
        job = self._jobs.build(run, attempt=attempt, subscription=agent["current_subscription"])
        job = await with_prompts(tx, run["id"], job)
        found = secrets_scan.findings(json.dumps(job))
        if found:
            return await self._refuse(tx, lease, run, found, now)
        event = runs.NewEvent(
            "dispatched",
            now,
            "foundry",
            {
                "agent": agent["name"],
                "attempt": attempt,
                "subscription": agent["current_subscription"],
                "branch": job["branch"],
            },
        )
        values = {
            "agent_name": agent["name"],
            "attempt": attempt,
            "agent_subscription": agent["current_subscription"],
            **silence.seen_values(now),
        }
        if not await runs.transition(
            tx,
            run["id"],
            expected=RunStatus.APPROVED,
            new=RunStatus.AGENT_RUNNING,
            event=event,
            lease=lease,
            values=values,
        ):
            return "lease lost"
        await outbox.enqueue(tx, effects.dispatch(run["id"], agent["name"], attempt, job), now=now)
        body = f"**Dispatched** to agent {agent['name']} (attempt {attempt}), on branch `{job['branch']}`."
        for effect in effects.session_note(run, "dispatched", body, attempt):
            await outbox.enqueue(tx, effect, now=now)
        await leases.release(tx, schema.runs, lease, now=now)
        return "dispatched"

    async def _refuse(
        self, tx: Tx, lease: leases.Lease, run: Mapping[str, Any], found: tuple[str, ...], now: datetime
    ) -> str:
        """Never send what looks like a credential; say what kind (never the value) and stop."""
        kinds = ", ".join(found)
        event = runs.NewEvent("secret_detected", now, "foundry", {"kinds": list(found)})
        if not await runs.transition(
            tx, run["id"], expected=RunStatus.APPROVED, new=RunStatus.BLOCKED, event=event, lease=lease
        ):
            return "lease lost"
        body = (
            f"**Foundry did not send this run to an agent**: its job contains what looks like a "
            f"credential ({kinds}). Remove it from the issue, then `/foundry start` again."
        )
        await outbox.enqueue(tx, effects.issue_comment(run, "secret_detected", body), now=now)
        await leases.release(tx, schema.runs, lease, now=now)
        return "refused: " + kinds


async def redispatch(
    tx: Tx,
    jobs: Jobs,
    run: Mapping[str, Any],
    *,
    now: datetime,
    why: str,
    subscription: str | None,
    context: Mapping[str, Any] | None = None,
) -> bool:
    """Send the run's agent a new attempt (same branch), compare-and-set on the current one.

    A run waiting on its PR goes back to `agent_running`: the agent works on the branch again."""
    attempt = int(run["attempt"])
    fresh = {**run, "attempt": attempt + 1, "agent_subscription": subscription}
    job = jobs.build(fresh, attempt=attempt + 1, subscription=subscription, context=context)
    job = await with_prompts(tx, run["id"], job)
    event = runs.NewEvent(
        "redispatched", now, "foundry", {"attempt": attempt + 1, "why": why, "subscription": subscription}
    )
    if not await runs.redispatch(
        tx,
        run["id"],
        attempt=attempt,
        status=run["status"],
        event=event,
        values={
            "agent_subscription": subscription,
            "status": RunStatus.AGENT_RUNNING.value,
            **silence.seen_values(now),
        },
    ):
        return False
    await outbox.enqueue(tx, effects.dispatch(run["id"], run["agent_name"], attempt + 1, job), now=now)
    return True


async def with_prompts(tx: Tx, run_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """The job with what people said to the run in its agent session since it began, oldest
    first: a prompt reaches the agent with the run's next job."""
    said = await runs.events_of_kind(tx, run_id, "prompt")
    if not said:
        return job
    prompts = [{"from": event["actor"], "prompt": event["data"].get("prompt", "")} for event in said]
    return {**job, "prompts": prompts}
