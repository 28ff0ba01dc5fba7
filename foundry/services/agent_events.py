"""What an agent reports about its run: progress, its PR, failure, cost, a failed subscription.

A token works only for its own agent, and only for runs dispatched to that agent while they
are active: a run's grant to its agent ends with the run. A subscription failure switches the
agent's subscription under the agent's row lock (held across processes), after re-reading it:
if it already changed since the failure was observed, the report is stale and changes nothing,
so a burst of failures gives one switch and one restart — never A→B→C. Every report is the
agent's sign of life: it restarts the silence clock and ends a silence flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from foundry import logs
from foundry.db import agents, outbox, runs, silence
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain.agents import Report
from foundry.domain.statuses import RunStatus, is_active
from foundry.errors import Conflict, Forbidden, NotFound
from foundry.services import dispatch, effects
from foundry.services.jobs import Jobs

log = logs.get("foundry.agent_events")
Clock = Callable[[], datetime]


class AgentEvents:
    def __init__(self, db: Database, *, jobs: Jobs, max_retries: int, clock: Clock) -> None:
        self._db = db
        self._jobs = jobs
        self._max_retries = max_retries
        self._clock = clock

    async def record(self, agent: Row, run_id: str, event: Report) -> dict[str, Any]:
        result = await self._db.transaction(lambda tx: self._apply(tx, agent, run_id, event))
        if event.kind == "subscription_failed":
            if result.pop("observed"):
                result |= await self._db.transaction(
                    lambda tx: self._failover(tx, agent, result["subscription"])
                )
            else:  # reported against a subscription the run has already left
                result |= {"switched": False, "stale": True}
        return result

    async def _apply(self, tx: Tx, agent: Row, run_id: str, event: Report) -> dict[str, Any]:
        run = await runs.lock(tx, run_id)
        if run is None:
            raise NotFound(f"No run has id {run_id}.")
        if run["agent_name"] != agent["name"]:
            raise Forbidden(f"Agent {agent['name']} was not dispatched run {run_id}.")
        if not is_active(run["status"]):
            raise Forbidden(f"Run {run_id} has ended ({run['status']}); its agent's access ended with it.")
        now = self._clock()
        await silence.seen(tx, run_id, now)  # any report is a sign of life: a silence flag ends
        handler = getattr(self, f"_on_{event.kind}")
        result: dict[str, Any] = await handler(tx, run, event, now)
        return {"run_id": run_id, "kind": event.kind, **result}

    async def _on_started(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        await self._note(tx, run, "agent_started", event, now)
        return {"status": run["status"]}

    async def _on_progress(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        await self._note(tx, run, "agent_progress", event, now)
        return {"status": run["status"]}

    async def _on_pr_opened(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        if run["pr_number"] is not None:
            if run["pr_number"] != event.pr_number:
                raise Conflict(f"Run {run['id']} already has PR #{run['pr_number']}; a run has one PR.")
            return await self._pr_updated(tx, run, now)
        moved = await runs.transition(
            tx,
            run["id"],
            expected=RunStatus.AGENT_RUNNING,
            new=RunStatus.PR_OPEN,
            event=runs.NewEvent(
                "pr_opened", now, run["agent_name"], {"pr_number": event.pr_number, "pr_url": event.pr_url}
            ),
            # In the run's repository, when routed: the PR's webhooks then find this run by it.
            values={"pr_number": event.pr_number, "pr_url": event.pr_url, "pr_repository": run["repository"]},
        )
        if moved:
            body = f"**Pull request opened**: {event.pr_url}"
            await outbox.enqueue(tx, effects.issue_comment(run, "pr_opened", body), now=now)
        return {"status": RunStatus.PR_OPEN.value if moved else run["status"], "changed": moved}

    async def _pr_updated(self, tx: Tx, run: Row, now: datetime) -> dict[str, Any]:
        """A later attempt reports the run's own PR again (it pushed to the same branch): the run
        is back on its PR at once, without waiting for GitHub's `synchronize` webhook."""
        if run["status"] != RunStatus.AGENT_RUNNING:
            return {"status": run["status"], "changed": False}
        event = runs.NewEvent(
            "pr_pushed", now, run["agent_name"], {"pr_number": run["pr_number"], "attempt": run["attempt"]}
        )
        moved = await runs.transition(
            tx, run["id"], expected=RunStatus.AGENT_RUNNING, new=RunStatus.PR_OPEN, event=event
        )
        return {"status": RunStatus.PR_OPEN.value if moved else run["status"], "changed": moved}

    async def _on_failed(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        retries_used = int(run["attempt"]) - 1
        if retries_used < self._max_retries:
            await dispatch.redispatch(
                tx,
                self._jobs,
                run,
                now=now,
                why="agent failed",
                subscription=run["agent_subscription"],
                context={"failure": event.reason or event.message or "the agent reported a failure"},
            )
            return {"status": run["status"], "redispatched": True}
        failed = runs.NewEvent("failed", now, run["agent_name"], {"reason": event.reason})
        if not await runs.transition(
            tx, run["id"], expected=run["status"], new=RunStatus.FAILED, event=failed
        ):  # cannot happen under the row lock; a transition that did not happen has no effect
            return {"status": run["status"], "redispatched": False}
        body = f"**Foundry run failed** after {run['attempt']} attempts: {event.reason or 'no reason given'}."
        await outbox.enqueue(tx, effects.issue_comment(run, "failed", body), now=now)
        return {"status": RunStatus.FAILED.value, "redispatched": False}

    async def _on_cost(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        assert event.usd is not None
        total = await runs.add_cost(
            tx, run["id"], event.usd, runs.NewEvent("cost", now, run["agent_name"], {"usd": event.usd})
        )
        return {"status": run["status"], "cost_usd": total}

    async def _on_subscription_failed(self, tx: Tx, run: Row, event: Report, now: datetime) -> dict[str, Any]:
        """Record the failure now; the switch happens in its own transaction, under the lock."""
        observed = run["agent_subscription"]
        await self._note(tx, run, "subscription_failed", event, now)
        reported = event.subscription or observed
        return {
            "status": run["status"],
            "subscription": observed,
            "observed": observed is not None and reported == observed,
        }

    async def _failover(self, tx: Tx, agent: Row, observed: str) -> dict[str, Any]:
        locked = await agents.lock(tx, agent["id"])
        if locked is None or locked["current_subscription"] != observed:
            return {"switched": False, "stale": True}
        now = self._clock()
        await agents.mark_unhealthy(tx, agent["id"], observed, "reported failed by the agent", now)
        healthy = [
            s["name"]
            for s in await agents.subscriptions_of(tx, agent["id"])
            if s["healthy"] and s["name"] != observed
        ]
        switched_to = healthy[0] if healthy else None
        await agents.switch_subscription(tx, agent["id"], switched_to)
        restarted = []
        for run in await runs.running_on(tx, agent["name"], observed):
            if switched_to is not None and await dispatch.redispatch(
                tx, self._jobs, run, now=now, why="subscription failed", subscription=switched_to
            ):
                restarted.append(run["id"])
        log.info("agent.failover", agent=agent["name"], from_=observed, to=switched_to, runs=restarted)
        return {
            "switched": True,
            "stale": False,
            "from": observed,
            "to": switched_to,
            "redispatched": restarted,
        }

    async def _note(self, tx: Tx, run: Mapping[str, Any], kind: str, event: Report, now: datetime) -> None:
        data = event.data()
        await runs.append_event(tx, run["id"], runs.NewEvent(kind, now, run["agent_name"], data))
