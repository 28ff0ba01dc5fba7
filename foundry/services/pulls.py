"""GitHub pull requests: tie each to its run, follow it, and remediate — exactly once.

A PR belongs to a run by, in order: the PR already recorded on a run; the head branch
`foundry/<identifier>-<run short id>`; a `Foundry-Run: <id>` line in its body; the issue
identifier in branch or title among runs still waiting for their PR. One run has at most one
PR. CI failures and requested changes re-dispatch the agent on the same branch, within
`remediation.max_retries` and `budget.max_cost_per_issue`; past either, the run needs a person.

The same steps serve the webhooks and the GitHub reconciler, whose delivery keys differ (a
GitHub GUID, or one derived from PR, head and state), so delivery dedup cannot make the two
one: each step is idempotent itself. A PR seen again at a head already recorded changes
nothing; closing is a compare-and-set transition; and a re-dispatch inserts first its notice on
the issue, keyed `run:<id>:remediate:<head sha>:<reason>:0` — the unique effect key is the
marker, so one failed head sends the agent back once, whoever saw it first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from foundry.db import deliveries, outbox, runs
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import pulls
from foundry.domain.statuses import RunStatus, is_active
from foundry.services import dispatch, effects
from foundry.services.delivery import Delivery, Result, Step, ignore, process, process_sync, recorded
from foundry.services.jobs import Jobs

NewDelivery = deliveries.NewDelivery


class Pulls:
    def __init__(
        self,
        db: Database,
        *,
        jobs: Jobs,
        max_retries: int,
        max_cost_per_issue: float | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._max_retries = max_retries
        self._max_cost = max_cost_per_issue
        self._clock = clock

    async def handle(self, delivery: Delivery, intent: pulls.Intent) -> Result:
        return await process(self._db, delivery, self._step_for(intent))

    def handle_sync(self, delivery: Delivery, intent: pulls.Intent) -> Result:
        """`handle` for the worker (the GitHub reconciler): the same steps, the same transaction."""
        return process_sync(self._db, delivery, self._step_for(intent))

    def _step_for(self, intent: pulls.Intent) -> Step:
        if isinstance(intent, pulls.Ignore):
            return ignore(intent.reason)
        handlers: dict[type, Callable[..., Any]] = {
            pulls.PrChanged: self._changed,
            pulls.PrClosed: self._closed,
            pulls.Remediate: self._remediate,
        }
        handler = handlers[type(intent)]

        async def step(tx: Tx, d: NewDelivery) -> Result:
            run, why_not = await _owner(tx, intent.pr)
            if run is None:
                return await recorded(tx, d, Result("ignored", reason=why_not))
            result: Result = await handler(tx, d, run, intent)
            return await recorded(tx, d, result)

        return step

    async def _changed(self, tx: Tx, d: NewDelivery, run: Row, intent: pulls.PrChanged) -> Result:
        pr = intent.pr
        if _at_head(run, pr):
            return Result("updated", run["id"], changed=False, reason="the PR is already at this head")
        first = run["pr_number"] is None
        event = runs.NewEvent(
            "pr_opened" if first else "pr_pushed",
            d.received_at,
            "github",
            {"pr_number": pr.number, "head_sha": pr.head_sha, "action": intent.action},
            d.id,
        )
        values = {
            "pr_number": pr.number,
            "pr_url": pr.url,
            "pr_repository": pr.repository,
            "pr_head_sha": pr.head_sha,
        }
        if run["status"] == RunStatus.AGENT_RUNNING:
            if not await runs.transition(
                tx,
                run["id"],
                expected=RunStatus.AGENT_RUNNING,
                new=RunStatus.PR_OPEN,
                event=event,
                values=values,
            ):
                return Result("updated", run["id"], changed=False, reason=f"run is no longer {run['status']}")
        else:
            await runs.update(tx, run["id"], values)
            await runs.append_event(tx, run["id"], event)
        if first:
            await _enqueue(
                tx,
                d.received_at,
                effects.issue_comment(run, "pr_opened", f"**Pull request opened**: {pr.url}"),
                effects.pr_attachment(run, pr.url, f"PR #{pr.number}: {pr.title or run['title']}"),
            )
        return Result("updated", run["id"], changed=True)

    async def _closed(self, tx: Tx, d: NewDelivery, run: Row, intent: pulls.PrClosed) -> Result:
        pr = intent.pr
        outcome = RunStatus.MERGED if pr.merged else RunStatus.CLOSED
        event = runs.NewEvent(outcome.value, d.received_at, "github", {"pr_number": pr.number}, d.id)
        if not await runs.transition(tx, run["id"], expected=run["status"], new=outcome, event=event):
            return Result("updated", run["id"], changed=False, reason=f"run is {run['status']}")
        verb = "merged" if pr.merged else "closed without merging"
        await _enqueue(
            tx,
            d.received_at,
            effects.issue_comment(run, outcome.value, f"**Pull request {verb}**: {pr.url}"),
        )
        return Result("updated", run["id"], changed=True)

    async def _remediate(self, tx: Tx, d: NewDelivery, run: Row, intent: pulls.Remediate) -> Result:
        why = self._why_not_retry(run, await runs.issue_cost(tx, run["issue_id"], run["tracker"]))
        if why is not None:
            return await self._needs_person(tx, d, run, intent, why)
        if not await outbox.enqueue(tx, self._sent_back(run, intent), now=d.received_at):
            head = f"{intent.pr.head_sha[:12]} ({intent.reason})"
            return Result(
                "updated", run["id"], changed=False, reason=f"the agent was already sent back for {head}"
            )
        redone = await dispatch.redispatch(
            tx,
            self._jobs,
            run,
            now=d.received_at,
            why=intent.reason,
            subscription=run["agent_subscription"],
            context=_context(intent),
        )
        return Result("updated", run["id"], changed=redone)

    def _sent_back(self, run: Row, intent: pulls.Remediate) -> outbox.Effect:
        """The notice on the issue, inserted first: its effect key says this head was handled."""
        attempt = int(run["attempt"]) + 1
        what = "CI failed" if intent.reason == "ci_failed" else intent.reason.replace("_", " ").capitalize()
        body = (
            f"**{what}** on {intent.pr.url} at `{intent.pr.head_sha[:12]}`: Foundry sent the agent "
            f"back to fix it (attempt {attempt} of {self._max_retries + 1})."
        )
        step = pulls.remediation_step(intent.pr.head_sha, intent.reason)
        return effects.issue_comment(run, step, body)

    def _why_not_retry(self, run: Mapping[str, Any], spent: float) -> str | None:
        if run["agent_name"] is None:
            return "the run has no agent to send back"
        if int(run["attempt"]) - 1 >= self._max_retries:
            return f"the agent already retried {self._max_retries} times"
        if self._max_cost is not None and spent >= self._max_cost:
            return f"the issue's budget of ${self._max_cost:.2f} is spent (${spent:.2f})"
        return None

    async def _needs_person(
        self, tx: Tx, d: NewDelivery, run: Row, intent: pulls.Remediate, why: str
    ) -> Result:
        if run["status"] != RunStatus.REVIEW_REQUIRED:
            event = runs.NewEvent(
                "needs_person", d.received_at, "foundry", {"reason": intent.reason, "why": why}, d.id
            )
            await runs.transition(
                tx, run["id"], expected=run["status"], new=RunStatus.REVIEW_REQUIRED, event=event
            )
        body = f"**A person is needed** on {intent.pr.url}: {why} ({intent.reason.replace('_', ' ')})."
        await _enqueue(tx, d.received_at, effects.issue_comment(run, "needs_person", body))
        return Result("updated", run["id"], changed=False, reason=why)


def _at_head(run: Row, pr: pulls.PullRequest) -> bool:
    """The run already records this PR at this head: seeing it again changes nothing."""
    return (run["pr_number"], run["pr_repository"], run["pr_head_sha"]) == (
        pr.number,
        pr.repository,
        pr.head_sha,
    )


def _context(intent: pulls.Remediate) -> dict[str, Any]:
    """What the agent is sent back with (the sender adds the failing checks when it sends)."""
    return {
        "reason": intent.reason,
        "details": intent.details,
        "pr_url": intent.pr.url,
        "repository": intent.pr.repository,
        "head_sha": intent.pr.head_sha,
    }


async def _owner(tx: Tx, pr: pulls.PullRequest) -> tuple[Row | None, str]:
    """The active run this PR belongs to, or None and why not."""
    run = await runs.by_pull_request(tx, pr.repository, pr.number) or await _linked(tx, pr)
    if run is None:
        return None, "no run is waiting for this pull request"
    if run["repository"] is not None and run["repository"].casefold() != pr.repository.casefold():
        return None, f"the pull request is in {pr.repository}; run {run['id']} works in {run['repository']}"
    # An agent's `pr_opened` records the number but not the repository: that is no other PR.
    if run["pr_number"] not in (None, pr.number) or run["pr_repository"] not in (None, pr.repository):
        return None, f"run {run['id']} already has PR #{run['pr_number']}"
    if not is_active(run["status"]):
        return None, f"run {run['id']} is {run['status']}"
    return run, ""


async def _linked(tx: Tx, pr: pulls.PullRequest) -> Row | None:
    link = pulls.link(pr)
    if link.short_id is not None:
        run = await runs.by_short_id(tx, link.short_id)
        if run is not None:
            return run
    if link.run_id is not None:
        run = await runs.lock(tx, link.run_id)
        if run is not None:
            return run
    return await runs.awaiting_pr(tx, link.identifiers, repository=pr.repository)


async def _enqueue(tx: Tx, now: datetime, *effects_: outbox.Effect) -> None:
    for effect in effects_:
        await outbox.enqueue(tx, effect, now=now)
