"""The external effects each step decides, as outbox rows with keys from run, step and attempt."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from foundry.db import outbox
from foundry.db.outbox import Effect
from foundry.db.tx import Tx
from foundry.domain import effects, messages, sessions, templates, trackers
from foundry.domain.plans import Plan

LINEAR_COMMENT, SLACK_MESSAGE, SLACK_UPDATE = "linear_comment", "slack_message", "slack_update"
AGENT_DISPATCH, AGENT_CANCEL = "agent_dispatch", "agent_cancel"
LINEAR_ATTACHMENT = "linear_attachment"
# Agent sessions: an activity (with the session's plan brought up to date), a session opened on
# an issue, and a delegated issue moved to its team's started state.
LINEAR_ACTIVITY, LINEAR_SESSION_CREATE = "linear_activity", "linear_session_create"
LINEAR_START_ISSUE = "linear_start_issue"
# Asking GitHub to send a failed webhook delivery again (the redelivery sweeper); no run.
GITHUB_REDELIVER = "github_redeliver"
# A comment on, or the PR linked from, an issue of any tracker but Linear (whose effects keep
# their own kinds): the sender finds the tracker's adapter by the payload's `tracker`.
ISSUE_COMMENT, ISSUE_ATTACHMENT = "issue_comment", "issue_attachment"


def issue_comment(run: Mapping[str, Any], step: str, body: str, attempt: int = 0) -> Effect:
    """What the run says on its issue at `step`: a comment, or — for a Linear run with an agent
    session — the session's activity for that milestone (`domain.sessions`), which carries the
    comment too, for a sender whose Linear credentials cannot act as the agent."""
    key = effects.key(run["id"], step, attempt)
    if not _on_linear(run):
        return Effect(key, ISSUE_COMMENT, {**issue_address(run), "body": body}, run["id"])
    payload = {"issue_id": run["linear_issue_id"], "body": body, "comment_id": effects.linear_comment_id(key)}
    session_id = run.get("agent_session_id")
    if session_id:
        activity = {
            "session_id": session_id,
            "activity_id": effects.linear_activity_id(key),
            "content": sessions.content(step, body),
        }
        return Effect(key, LINEAR_ACTIVITY, {**payload, **activity}, run["id"])
    return Effect(key, LINEAR_COMMENT, payload, run["id"])


def session_note(run: Mapping[str, Any], step: str, body: str, attempt: int = 0) -> list[Effect]:
    """A milestone told only in the run's agent session (none without a session)."""
    return [issue_comment(run, step, body, attempt)] if run.get("agent_session_id") else []


def session_opened(run: Mapping[str, Any], page_url: str, *, start_issue: bool) -> list[Effect]:
    """A session's first answer, within Linear's 10 s: a thought, and the run's page as the
    session's link (sent with it); and, for a delegated issue, the issue moved to started."""
    body = f"On it: Foundry run `{str(run['id'])[:8]}` is planning this issue. Follow it at {page_url}."
    [ack] = session_note(run, f"session_ack_{run['agent_session_id']}", body)
    said = [Effect(ack.effect_key, ack.kind, {**ack.payload, "external_url": page_url}, ack.run_id)]
    if start_issue:
        key = effects.key(run["id"], "start_issue")
        said.append(Effect(key, LINEAR_START_ISSUE, {"issue_id": run["linear_issue_id"]}, run["id"]))
    return said


def session_ended(session_id: str, issue_id: str) -> Effect:
    """The final word in a session whose Stop found no run left to stop (keyed by the session)."""
    key = f"session:{session_id}:stopped"
    body = "Nothing is running for this issue any more, so there was nothing to stop."
    payload = {
        "issue_id": issue_id,
        "body": body,
        "comment_id": effects.linear_comment_id(key),
        "session_id": session_id,
        "activity_id": effects.linear_activity_id(key),
        "content": {"type": sessions.RESPONSE, "body": body},
    }
    return Effect(key, LINEAR_ACTIVITY, payload)


def session_wanted(run: Mapping[str, Any], page_url: str) -> Effect:
    """An agent session opened on the issue of a run that has none (`sessions_for_all_runs`)."""
    payload = {"issue_id": run["linear_issue_id"], "url": page_url}
    return Effect(effects.key(run["id"], "session_create"), LINEAR_SESSION_CREATE, payload, run["id"])


def approval_message_key(run_id: str) -> str:
    return effects.key(run_id, "slack_approval")


def plan_ready(
    run: Mapping[str, Any],
    plan: Plan,
    roles: tuple[str, ...],
    channel: str | None,
    *,
    repository: str | None = None,
) -> list[Effect]:
    """The plan on the issue (with where it will be done, when routed) and the approval request."""
    body = templates.plan_comment(plan, roles)
    if repository is not None:
        body += f"\n\n**Repository**: {repository}"
    posted = [issue_comment(run, "plan_comment", body)]
    if channel:
        text, blocks = messages.approval_request(
            run["id"], run["issue_key"], run["title"], plan.summary, roles
        )
        payload = {"channel": channel, "text": text, "blocks": blocks}
        posted.append(Effect(approval_message_key(run["id"]), SLACK_MESSAGE, payload, run["id"]))
    return posted


def decided(run: Mapping[str, Any], outcome: str, actor: str, *, slack: bool) -> list[Effect]:
    """Tell the issue, and edit the approval message so nobody clicks a settled question."""
    said = [issue_comment(run, f"decision_{outcome}", f"**Foundry run {outcome}** by {actor}.")]
    if slack:
        text, blocks = messages.decision_made(run["issue_key"], run["title"], outcome, actor)
        payload = {"message_key": approval_message_key(run["id"]), "text": text, "blocks": blocks}
        said.append(Effect(effects.key(run["id"], "slack_decision"), SLACK_UPDATE, payload, run["id"]))
    return said


def dispatch(run_id: str, agent: str, attempt: int, job: dict[str, Any]) -> Effect:
    """One job per attempt: its key is the Idempotency-Key the agent dedups by."""
    payload = {"agent": agent, "attempt": attempt, "job": job}
    return Effect(effects.key(run_id, "dispatch", attempt), AGENT_DISPATCH, payload, run_id)


def cancel(run_id: str, agent: str, attempt: int) -> Effect:
    payload = {"agent": agent, "attempt": attempt, "run_id": run_id}
    return Effect(effects.key(run_id, "cancel", attempt), AGENT_CANCEL, payload, run_id)


async def after_stop(tx: Tx, run: Mapping[str, Any], at: datetime) -> None:
    """A stopped run's agent, if it had been sent one, is told to cancel its job."""
    if run["agent_name"] is not None and int(run["attempt"]) > 0:
        await outbox.enqueue(tx, cancel(run["id"], run["agent_name"], int(run["attempt"])), now=at)


def pr_attachment(run: Mapping[str, Any], url: str, title: str) -> Effect:
    """The PR linked from the issue: Linear upserts attachments by URL, and the key says once."""
    key = effects.key(run["id"], "pr_attachment")
    if not _on_linear(run):
        return Effect(key, ISSUE_ATTACHMENT, {**issue_address(run), "url": url, "title": title}, run["id"])
    payload = {"issue_id": run["linear_issue_id"], "url": url, "title": title}
    return Effect(key, LINEAR_ATTACHMENT, payload, run["id"])


def issue_address(run: Mapping[str, Any]) -> dict[str, str]:
    return {"tracker": run["tracker"], "issue_id": run["issue_id"], "issue_key": run["issue_key"]}


def _on_linear(run: Mapping[str, Any]) -> bool:
    """Runs read from the database name their tracker; a few effects are built from partial
    rows (a session's run before it is read), which are always Linear's."""
    return bool(run.get("tracker", trackers.LINEAR) == trackers.LINEAR)


def dispatch_given_up(run: Mapping[str, Any], attempt: int, reason: str) -> Effect:
    """The one comment saying a job never reached its agent: keyed by run and attempt, so a
    retried settle, or a second sender, never says it twice."""
    body = (
        f"**Foundry run failed**: attempt {attempt} could not be delivered to agent "
        f"{run['agent_name']} ({reason}). Once the agent is reachable, retry the run "
        "(`/foundry start` on this issue, or the operator's retry)."
    )
    return issue_comment(run, "dispatch_failed", body, attempt)
