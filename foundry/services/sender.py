"""The outbox sender: deliver each pending effect, retry with backoff, never twice after success.

An effect given up on (failed: not retryable, or out of attempts) goes on its run's timeline,
and a dispatch given up fails its run with one comment on the issue — all in the transaction
that settles the outbox row, fenced by the sender's lease, so a stale sender changes nothing.
Every error is scrubbed of the configured secrets before it is logged or stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients.agents import GitHubActionsClient, WebhookAgentClient
from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.clients.linear import LinearClient
from foundry.clients.slack import SlackClient
from foundry.clients.trackers import IssueAddress, IssueTracker, table
from foundry.db import agents, leases, outbox, runs
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import backoff, sessions, statuses, trackers
from foundry.domain.statuses import RunStatus
from foundry.services import effects

log = logs.get("foundry.outbox")
# A session's activities go to Linear in the order they were decided (a late `action` after the
# final `response` would reopen an ended session).
_IN_ORDER = (effects.LINEAR_ACTIVITY,)
Clock = Callable[[], datetime]


class Skip(Exception):
    """The effect cannot be sent and never will be (its write-back is off): record and move on."""


class NotYet(Exception):
    """The effect depends on another that is not sent yet (an edit of a message still queued)."""


class Sender:
    def __init__(
        self,
        db: Database,
        *,
        linear: LinearClient | None,
        slack: SlackClient | None,
        webhook_agents: WebhookAgentClient | None = None,
        github: GitHubActionsClient | None = None,
        github_reader: GitHubClient | None = None,
        issue_trackers: Mapping[str, IssueTracker] | None = None,
        owner: str,
        lease: timedelta,
        max_attempts: int,
        clock: Clock,
        redact: Callable[[str], str] = logs.scrub,
        retry_at: Callable[[datetime], None] | None = None,
    ) -> None:
        """`retry_at` hears when an effect backs off until: the worker wakes then to retry it.
        `issue_trackers`: the adapter for each tracker Foundry writes to, by name."""
        self._db = db
        self._retry_at = retry_at
        self._linear = linear
        self._slack = slack
        self._webhook_agents = webhook_agents
        self._github = github
        self._github_reader = github_reader
        self._trackers = dict(issue_trackers) if issue_trackers is not None else table(linear, None)
        self._owner = owner
        self._ttl = lease
        self._max_attempts = max_attempts
        self._clock = clock
        self._redact = redact
        self._warned: set[str] = set()

    def send_some(self, limit: int = 20) -> int:
        """Deliver due effects until none is due or `limit` were handled: a burst drains without
        waiting a worker pass per effect; the other loops still get their turn after `limit`."""
        for handled in range(limit):
            if self.send_once() == 0:
                return handled
        return limit

    def send_once(self) -> int:
        """Deliver one due effect; the number handled (0 or 1)."""
        claimed = self._db.transaction_sync(
            lambda tx: outbox.claim_due(
                tx, owner=self._owner, now=self._clock(), ttl=self._ttl, ordered=_IN_ORDER
            )
        )
        if claimed is None:
            return 0
        lease, row = claimed
        outcome = self._attempt(row)
        if outcome.get("error") is not None:
            outcome["error"] = self._redact(outcome["error"])
        self._settle(lease, row, **outcome)
        return 1

    def _attempt(self, row: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return {"state": "sent", "result": self._deliver(row)}
        except Skip as skipped:
            # A job that can never be sent (its agent is gone, its write-back off) is a job
            # given up on: skipping it quietly would leave the run waiting for ever.
            given_up = row["kind"] == effects.AGENT_DISPATCH
            return {"state": "failed" if given_up else "skipped", "error": str(skipped)}
        except NotYet as waiting:
            return {"state": "pending", "error": str(waiting), "retry_after_s": 1.0, "counted": False}
        except ValueError as exc:  # the effect itself is malformed (an agent's bad config): never sendable
            return {"state": "failed", "error": str(exc)}
        except OutboundError as exc:
            final = not exc.retryable or row["attempts"] >= self._max_attempts
            return {
                "state": "failed" if final else "pending",
                "error": str(exc),
                "retry_after_s": exc.retry_after_s,
            }

    def _settle(
        self,
        lease: leases.Lease,
        row: Mapping[str, Any],
        *,
        state: str,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
        retry_after_s: float | None = None,
        counted: bool = True,
    ) -> None:
        now = self._clock()
        next_at = None
        if state == "pending":
            next_at = backoff.next_attempt(now, row["attempts"] if counted else 1, retry_after_s)

        async def settle(tx: Tx) -> tuple[bool, str | None]:
            if not await outbox.settle(
                tx, lease, now=now, state=state, result=result, error=error, next_attempt_at=next_at
            ):
                return False, None  # our lease lapsed: whoever holds the row now settles it
            if state == "sent" and row["kind"] == effects.LINEAR_SESSION_CREATE and result:
                return True, await _adopt_session(tx, row, str(result["session_id"]), now)
            if state != "failed":
                return True, None
            return True, await _on_given_up(tx, row, state, error or state, now)

        settled, run_outcome = self._db.transaction_sync(settle)
        if settled and next_at is not None and self._retry_at is not None:
            self._retry_at(next_at)
        log.info(
            "outbox.attempt",
            effect_key=row["effect_key"],
            run_id=row["run_id"],
            state=state,
            attempts=row["attempts"],
            error=error,
            settled=settled,
        )
        if run_outcome is not None:
            log.warning(
                "outbox.gave_up",
                effect_key=row["effect_key"],
                kind=row["kind"],
                run_id=row["run_id"],
                error=error,
                run=run_outcome,
            )

    def _deliver(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        kind, payload = row["kind"], row["payload"]
        if kind == effects.LINEAR_COMMENT:
            linear = IssueAddress(trackers.LINEAR, payload["issue_id"], "")
            said = self._tracker(trackers.LINEAR).comment(
                linear, payload["body"], effect_key=row["effect_key"], retried=row["attempts"] > 1
            )
            return {"comment_id": said}
        if kind == effects.LINEAR_ACTIVITY:
            return self._activity(row)
        if kind == effects.LINEAR_SESSION_CREATE:
            return self._open_session(row)
        if kind == effects.LINEAR_START_ISSUE:
            return {"state_id": self._client("linear").start_issue(payload["issue_id"])}
        if kind == effects.LINEAR_ATTACHMENT:
            linear = IssueAddress(trackers.LINEAR, payload["issue_id"], "")
            self._tracker(trackers.LINEAR).attach(
                linear, payload["url"], payload["title"], effect_key=row["effect_key"], retried=False
            )
            return {"url": payload["url"]}
        if kind == effects.SLACK_MESSAGE:
            posted = self._client("slack").post_message(
                channel=payload["channel"],
                text=payload["text"],
                blocks=payload["blocks"],
                effect_key=row["effect_key"],
                look_first=row["attempts"] > 1,
            )
            return {"channel": posted.channel, "ts": posted.ts}
        if kind == effects.SLACK_UPDATE:
            self._update(payload)
            return None
        if kind in (effects.AGENT_DISPATCH, effects.AGENT_CANCEL):
            return self._to_agent(row)
        if kind in (effects.ISSUE_COMMENT, effects.ISSUE_ATTACHMENT):
            return self._on_issue(row)
        if kind == effects.GITHUB_REDELIVER:
            if self._github_reader is None:
                raise Skip("github write-back is off (no token configured)")
            self._github_reader.redeliver(payload["repository"], payload["hook_id"], payload["delivery_id"])
            return {"delivery_id": payload["delivery_id"]}
        raise Skip(f"unknown effect kind {kind}")

    def _on_issue(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A comment or PR link on another tracker's issue, through that tracker's adapter. A
        second attempt may follow one the tracker accepted unheard: the adapter looks first."""
        payload = row["payload"]
        tracker = self._tracker(payload["tracker"])
        issue = IssueAddress(payload["tracker"], payload["issue_id"], payload["issue_key"])
        key, retried = row["effect_key"], row["attempts"] > 1
        if row["kind"] == effects.ISSUE_ATTACHMENT:
            tracker.attach(issue, payload["url"], payload["title"], effect_key=key, retried=retried)
            return {"url": payload["url"]}
        return {"comment_id": tracker.comment(issue, payload["body"], effect_key=key, retried=retried)}

    def _activity(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The milestone in the run's agent session, then the session's plan as the run stands
        now (read at send time, so a late retry never sets an older plan over a newer one).

        Credentials that cannot act as the agent (a personal key) post the milestone as the
        comment it would otherwise have been: the issue still hears every step."""
        payload = row["payload"]
        linear: LinearClient = self._client("linear")
        if not linear.acts_as_app:
            linear.create_comment(
                comment_id=payload["comment_id"], issue_id=payload["issue_id"], body=payload["body"]
            )
            return {"comment_id": payload["comment_id"]}
        session_id = payload["session_id"]
        linear.create_activity(
            activity_id=payload["activity_id"], session_id=session_id, content=payload["content"]
        )
        changes: dict[str, Any] = {}
        if payload.get("external_url"):
            changes["externalUrls"] = [{"label": "Foundry run", "url": payload["external_url"]}]
        run = self._db.transaction_sync(lambda tx: runs.get(tx, row["run_id"]), write=False)
        if run is not None and run["plan"] is not None:
            changes["plan"] = sessions.plan(run)
        if changes:
            linear.update_session(session_id, changes)
        return {"activity_id": payload["activity_id"], "session_id": session_id}

    def _open_session(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An agent session on the run's issue. Linear takes no client-chosen session id, so a
        retry first looks for the session an earlier attempt made (linked to the run's page)."""
        payload = row["payload"]
        linear: LinearClient = self._client("linear")
        if not linear.acts_as_app:
            raise Skip("agent sessions need the Linear app's credentials, not a personal key")
        found = None
        if row["attempts"] > 1:
            found = linear.find_session(payload["issue_id"], url=payload["url"])
        session_id = found or linear.create_session(
            payload["issue_id"], url=payload["url"], label="Foundry run"
        )
        return {"session_id": session_id}

    def _to_agent(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """A job (or its cancellation) to the agent, keyed `<run_id>:<attempt>` for its dedup."""
        payload = row["payload"]
        agent = self._db.transaction_sync(lambda tx: agents.by_name(tx, payload["agent"]), write=False)
        if agent is None:
            raise Skip(f"agent {payload['agent']} no longer exists")
        run_id, attempt = row["run_id"], payload["attempt"]
        cancel = row["kind"] == effects.AGENT_CANCEL
        body = (
            {"type": "cancel", "run_id": run_id, "attempt": attempt}
            if cancel
            else self._with_checks(payload["job"])
        )
        key = f"{run_id}:{attempt}" + (":cancel" if cancel else "")
        if agent["provider"] == "manual":
            return {"manual": True}  # recorded for a person, who reports the PR
        if agent["provider"] == "github_actions":
            return self._workflow(agent, body, key, cancel)
        signing_key = self._db.transaction_sync(
            lambda tx: agents.active_token_hash(tx, agent["id"]), write=False
        )
        if signing_key is None:
            raise OutboundError(
                "agent", f"agent {agent['name']} has no active token to sign with", retryable=True
            )
        self._client("agents").send(
            endpoint=agent["endpoint"], body=body, idempotency_key=key, signing_key=signing_key
        )
        return {"idempotency_key": key}

    def _with_checks(self, job: dict[str, Any]) -> dict[str, Any]:
        """A re-dispatch after failed CI carries the failing checks' names and summaries, read
        when the job is sent (the webhook that triggered it must answer fast, without them)."""
        context = job.get("context") or {}
        if context.get("reason") != "ci_failed" or self._github_reader is None or "repository" not in context:
            return job
        try:
            failing: Any = self._github_reader.failing_checks(context["repository"], context["head_sha"])
        except OutboundError as exc:  # the job still goes: the agent can read the checks itself
            failing = self._redact(f"could not be read: {exc}")
        return {**job, "context": {**context, "failing_checks": failing}}

    def _workflow(
        self, agent: Mapping[str, Any], body: dict[str, Any], key: str, cancel: bool
    ) -> dict[str, Any]:
        if cancel:
            return {"note": "a workflow run is not cancelled by Foundry; the job's run has ended"}
        config = agent["config"]
        inputs = {
            "run_id": str(body["run_id"]),
            "attempt": str(body["attempt"]),
            "branch": body["branch"],
            "callback_url": body["callback_url"],
            "job": json.dumps(body),
        }
        # The workflow runs in the run's repository at its base branch, unless the agent names
        # one fixed repository (and ref) for every run.
        repository = config.get("repository") or body.get("repository")
        if not repository:
            raise ValueError(f"agent {agent['name']} names no repository and the run has none")
        self._client("github").dispatch_workflow(
            repository=repository,
            workflow=config["workflow"],
            ref=config.get("ref") or body.get("base_branch") or "main",
            inputs=inputs,
        )
        return {"idempotency_key": key, "workflow": config["workflow"]}

    def _update(self, payload: Mapping[str, Any]) -> None:
        original = self._db.transaction_sync(lambda tx: outbox.find(tx, payload["message_key"]), write=False)
        if original is None or original["state"] in ("skipped", "failed"):
            raise Skip("the message to edit was never posted")
        if original["state"] != "sent":
            raise NotYet("the message to edit is not posted yet")
        where = original["result"]
        self._client("slack").update_message(
            channel=where["channel"], ts=where["ts"], text=payload["text"], blocks=payload["blocks"]
        )

    def _tracker(self, name: str) -> IssueTracker:
        """The adapter of the tracker `name`, from the table by tracker."""
        tracker = self._trackers.get(name)
        if tracker is None:
            self._warn_off(name)
            raise Skip(f"{name} write-back is off (no token configured)")
        return tracker

    def _warn_off(self, service: str) -> None:
        if service not in self._warned:
            self._warned.add(service)
            log.warning("writeback.off", service=service)

    def _client(self, service: str) -> Any:
        client = {
            "linear": self._linear,
            "slack": self._slack,
            "agents": self._webhook_agents,
            "github": self._github,
        }[service]
        if client is None:
            self._warn_off(service)
            raise Skip(f"{service} write-back is off (no token configured)")
        return client


async def _adopt_session(tx: Tx, row: Mapping[str, Any], session_id: str, now: datetime) -> str | None:
    """The session made for a run becomes the run's, and says its first word there."""
    run = await runs.adopt_session(tx, row["run_id"], session_id, now)
    if run is None:
        return None
    for effect in effects.session_opened(run, row["payload"]["url"], start_issue=False):
        await outbox.enqueue(tx, effect, now=now)
    return None


async def _on_given_up(tx: Tx, row: Mapping[str, Any], state: str, error: str, now: datetime) -> str | None:
    """The effect on its run's timeline; a dispatch given up also fails the run. What became
    of the run (None: the effect has none)."""
    if row["run_id"] is None:
        return None
    run = await runs.lock(tx, row["run_id"])
    if run is None:
        return None
    data = {
        "effect_key": row["effect_key"],
        "kind": row["kind"],
        "state": state,
        "attempts": row["attempts"],
        "error": error,
    }
    await runs.append_event(tx, run["id"], runs.NewEvent("effect_failed", now, "foundry", data))
    if row["kind"] != effects.AGENT_DISPATCH:
        return "noted"
    return await _fail_dispatched(tx, run, row, error, now)


async def _fail_dispatched(tx: Tx, run: Row, row: Mapping[str, Any], error: str, now: datetime) -> str:
    """Fail the run whose current job never reached its agent, and say so once on the issue."""
    attempt = int(row["payload"]["attempt"])
    if int(run["attempt"]) != attempt:
        return "noted: a later attempt superseded this job"
    if not statuses.may_transition(run["status"], RunStatus.FAILED):
        return f"noted: the run is {run['status']}"
    seen = run["agent_seen_at"]
    if seen is not None and seen > row["created_at"]:
        return "noted: the agent has reported since, so it has the job"
    reason = f"the job could not be delivered to agent {row['payload']['agent']}: {error}"
    event = runs.NewEvent("failed", now, "foundry", {"reason": reason, "effect_key": row["effect_key"]})
    if not await runs.transition(tx, run["id"], expected=run["status"], new=RunStatus.FAILED, event=event):
        return f"noted: the run left {run['status']}"
    await outbox.enqueue(tx, effects.dispatch_given_up(run, attempt, error), now=now)
    return "failed"
