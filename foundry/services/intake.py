"""Linear intake: open, stop, decide or add to a run — through the exactly-once pipeline."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from foundry.db import deliveries, outbox, runs
from foundry.db import intake as intake_store
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain import approvals, routing, trackers, triggers
from foundry.domain.statuses import RunStatus
from foundry.services import decisions, effects
from foundry.services.delivery import Delivery, Step, ignore, process, process_sync, recorded
from foundry.services.delivery import Result as IntakeResult

__all__ = ["Delivery", "Intake", "IntakeResult"]

# `runs.max_per_issue_per_day` counts runs opened in this trailing window.
RUNAWAY_WINDOW = timedelta(days=1)


class Intake:
    def __init__(
        self,
        db: Database,
        *,
        approvers: tuple[approvals.Approver, ...],
        max_runs_per_day: int,
        public_url: str = "http://127.0.0.1:8000",
        sessions_for_all_runs: bool = False,
        repositories: routing.Repositories | None = None,
    ) -> None:
        self._db = db
        self._approvers = approvers
        self._max_runs_per_day = max_runs_per_day
        self._public_url = public_url.rstrip("/")
        self._sessions_for_all_runs = sessions_for_all_runs
        self._repositories = repositories or routing.Repositories()

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
        if isinstance(intent, triggers.StopSession):
            return lambda tx, d: _stop_session(tx, d, intent)
        if isinstance(intent, triggers.ChooseRepository):
            return lambda tx, d: self._choose_repository(tx, d, intent)
        return ignore(intent.reason)

    def page_url(self, run_id: str) -> str:
        return f"{self._public_url}/runs/{run_id}"

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
            await self._announce(tx, opening, intent, now)
            return IntakeResult("opened" if opening.opened else "attached", opening.run_id)
        guard = f"runaway guard: {self._max_runs_per_day} runs for this issue in the last 24 hours"
        return await recorded(tx, d, IntakeResult("ignored", reason=guard))

    async def _announce(
        self, tx: Tx, opening: intake_store.Opening, intent: triggers.OpenRun, now: datetime
    ) -> None:
        """A delegation is answered in its session at once (and the run adopts the session if it
        was opened otherwise); with `sessions_for_all_runs`, any other new run asks for one."""
        if intent.issue.tracker != trackers.LINEAR:
            return  # agent sessions are Linear's
        page = self.page_url(opening.run_id)
        run: dict[str, Any] = {"id": opening.run_id, "linear_issue_id": intent.issue.id}
        session_id = intent.agent_session_id
        if session_id is None:
            if opening.opened and self._sessions_for_all_runs:
                await outbox.enqueue(tx, effects.session_wanted(run, page), now=now)
            return
        if not opening.opened:
            await runs.adopt_session(tx, opening.run_id, session_id, now, replace=True)
        for effect in effects.session_opened({**run, "agent_session_id": session_id}, page, start_issue=True):
            await outbox.enqueue(tx, effect, now=now)

    async def _choose_repository(
        self, tx: Tx, d: deliveries.NewDelivery, intent: triggers.ChooseRepository
    ) -> IntakeResult:
        """`/foundry repo owner/name`: the run waiting to be told where to work is planned there."""
        run_id = await runs.active_id(tx, intent.issue_id, intent.tracker)
        if run_id is None:
            return await recorded(tx, d, IntakeResult("ignored", reason="no active run to route"))
        repository = self._repositories.named(intent.repository)
        if repository is None:
            known = ", ".join(repo.name for repo in self._repositories.all) or "none are configured"
            why = f"{intent.repository} is not a configured repository ({known})"
        else:
            actor = intent.actor.describe()
            said = {"repository": repository.name, "reason": f"chosen by {actor} → {repository.name}"}
            event = runs.NewEvent("routed", d.received_at, actor, said, d.id)
            if await runs.choose_repository(tx, run_id, repository.name, event):
                return await recorded(tx, d, IntakeResult("updated", run_id))
            why = "the run's repository was decided when it was planned"
        if intent.agent_session_id:
            note = f"Not changed: {why}."
            await _answer_prompt(tx, run_id, intent.agent_session_id, d.id, note, d.received_at)
        return await recorded(tx, d, IntakeResult("ignored", run_id, reason=why))

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
            run_id = await runs.active_id(tx, intent.issue_id, intent.tracker)
            person = intent.actor
            approver = approvals.by_tracker_actor(
                self._approvers, intent.tracker, email=person.email, login=person.name
            )
            decider = decisions.Decider(person.describe(), intent.tracker, approver)
        decided = None
        if run_id is not None:
            decided = await decisions.decide(
                tx, run_id, intent.decision, decider, at=d.received_at, delivery_id=d.id
            )
        if decided is None:
            return await recorded(tx, d, IntakeResult("ignored", reason="no active run to decide"))
        if isinstance(intent, triggers.Decide) and intent.agent_session_id and not decided.changed:
            # A decision prompted in the agent panel that changed nothing is answered there.
            note = f"Nothing decided: {decided.reason}."
            key = intent.activity_id or d.id
            await _answer_prompt(tx, decided.run_id, intent.agent_session_id, key, note, d.received_at)
        result = IntakeResult("decided", decided.run_id, reason=decided.reason, changed=decided.changed)
        return await recorded(tx, d, result, refused=decided.refused)


def _new_run(intent: triggers.OpenRun, now: datetime) -> runs.NewRun:
    issue = intent.issue
    return runs.NewRun(
        id=str(uuid.uuid4()),
        issue_id=issue.id,
        issue_key=issue.identifier,
        title=issue.title,
        status=RunStatus.INTAKE,
        trigger=intent.trigger,
        created_at=now,
        description=issue.description,
        issue_url=issue.url,
        trigger_label_id=intent.label_id,
        agent_session_id=intent.agent_session_id,
        tracker=issue.tracker,
    )


async def _stop(tx: Tx, d: deliveries.NewDelivery, intent: triggers.StopRun) -> IntakeResult:
    event = runs.NewEvent("stopped", d.received_at, intent.actor.describe(), {"reason": intent.reason}, d.id)
    stopped = await runs.stop_active(
        tx,
        intent.issue_id,
        event,
        label_ids=intent.removed_label_ids,
        tracker=intent.tracker,
        spare_with_pr=intent.spare_with_pr,
    )
    if stopped is None:
        return await recorded(tx, d, IntakeResult("ignored", reason="no active run to stop"))
    await effects.after_stop(tx, stopped, d.received_at)
    for effect in effects.session_note(stopped, "stopped", f"**Foundry run stopped**: {intent.reason}."):
        await outbox.enqueue(tx, effect, now=d.received_at)
    return await recorded(tx, d, IntakeResult("cancelled", stopped["id"]))


async def _stop_session(tx: Tx, d: deliveries.NewDelivery, intent: triggers.StopSession) -> IntakeResult:
    """Stop pressed in the agent panel: the run stops, its agent is told to cancel, and the
    session that asked hears one final activity — also when there was nothing left to stop."""
    actor = intent.actor.describe()
    data = {"reason": "stopped in the Linear agent session", "agent_session_id": intent.agent_session_id}
    event = runs.NewEvent("stopped", d.received_at, actor, data, d.id)
    stopped = await runs.stop_active(tx, intent.issue_id, event)
    if stopped is None:
        if not await runs.had_session(tx, intent.issue_id, intent.agent_session_id):
            # Never this session's run (it never opened one): one word ends the session. A run
            # of this session already said its final word when it ended.
            ended = effects.session_ended(intent.agent_session_id, intent.issue_id)
            await outbox.enqueue(tx, ended, now=d.received_at)
        return await recorded(tx, d, IntakeResult("ignored", reason="no active run to stop"))
    await effects.after_stop(tx, stopped, d.received_at)
    told = {**stopped, "agent_session_id": intent.agent_session_id}
    body = f"**Foundry run stopped** by {actor}: nothing more will be done, and the agent was told to cancel."
    await outbox.enqueue(tx, effects.issue_comment(told, "stopped", body), now=d.received_at)
    return await recorded(tx, d, IntakeResult("cancelled", stopped["id"]))


async def _add_prompt(tx: Tx, d: deliveries.NewDelivery, intent: triggers.AddPrompt) -> IntakeResult:
    run_id = await runs.active_id(tx, intent.issue_id)
    if run_id is None:
        return await recorded(tx, d, IntakeResult("ignored", reason="no active run for this prompt"))
    if intent.activity_id is not None and await _prompt_seen(tx, run_id, intent.activity_id):
        # The same prompt in another delivery (Linear's retries resend the same bytes; this
        # catches any other copy): it is on the run once.
        return await recorded(tx, d, IntakeResult("updated", run_id, changed=False))
    await runs.append_event(
        tx,
        run_id,
        runs.NewEvent(
            "prompt",
            d.received_at,
            intent.actor.describe(),
            {
                "prompt": intent.prompt,
                "agent_session_id": intent.agent_session_id,
                "activity_id": intent.activity_id,
            },
            d.id,
        ),
    )
    note = "Noted: the coding agent gets this with the run's next job."
    key = intent.activity_id or d.id
    await _answer_prompt(tx, run_id, intent.agent_session_id, key, note, d.received_at)
    return await recorded(tx, d, IntakeResult("updated", run_id))


async def _prompt_seen(tx: Tx, run_id: str, activity_id: str) -> bool:
    said = await runs.events_of_kind(tx, run_id, "prompt")
    return any(event["data"].get("activity_id") == activity_id for event in said)


async def _answer_prompt(
    tx: Tx, run_id: str, session_id: str, prompt_key: str, body: str, at: datetime
) -> None:
    """A thought in the session that prompted, keyed by the prompt's own activity id."""
    run = await runs.get(tx, run_id)
    if run is None:
        return
    told = {**run, "agent_session_id": session_id}
    await outbox.enqueue(tx, effects.issue_comment(told, f"prompt_{prompt_key}", body), now=at)
