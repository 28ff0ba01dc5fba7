"""Which Linear events open, stop, decide or add to a run, and which are ignored (and why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from foundry.domain import events, trackers
from foundry.domain.events import Actor, IssueRef


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    STOP = "stop"


@dataclass(frozen=True)
class TriggerRules:
    label: str = "foundry"
    # Optional: the trigger label's Linear id, which makes label removal unambiguous.
    label_id: str | None = None
    bot_actor_ids: frozenset[str] = frozenset()
    # Foundry's own app user in Linear, learned rather than configured: its events are its own doing.
    own_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OpenRun:
    issue: IssueRef
    trigger: str
    actor: Actor
    label_id: str | None = None
    agent_session_id: str | None = None


@dataclass(frozen=True)
class StopRun:
    issue_id: str
    reason: str
    actor: Actor
    # Set for a label removal: stop only a run whose trigger label is among these ids.
    removed_label_ids: frozenset[str] | None = None
    tracker: str = trackers.LINEAR
    # An issue marked done: a run that has its PR is left to it (the PR's merge may be what
    # closed the issue, and its webhook can come second); a run without one is stopped.
    spare_with_pr: bool = False


@dataclass(frozen=True)
class Decide:
    issue_id: str
    decision: Decision
    actor: Actor
    note: str = ""
    # Set when the decision is a prompt in Linear's agent panel: the answer goes there too.
    agent_session_id: str | None = None
    activity_id: str | None = None
    tracker: str = trackers.LINEAR


@dataclass(frozen=True)
class AddPrompt:
    issue_id: str
    prompt: str
    actor: Actor
    agent_session_id: str
    # The prompt activity's id: its acknowledgement is keyed by it, so a redelivery adds none.
    activity_id: str | None = None


@dataclass(frozen=True)
class StopSession:
    """Stop pressed in Linear's agent panel: stop the session's run and end the session."""

    issue_id: str
    actor: Actor
    agent_session_id: str


@dataclass(frozen=True)
class ChooseRepository:
    """`/foundry repo owner/name`: a person answers which repository the run works in."""

    issue_id: str
    repository: str
    actor: Actor
    agent_session_id: str | None = None
    tracker: str = trackers.LINEAR


@dataclass(frozen=True)
class Ignore:
    reason: str


_COMMAND = re.compile(r"^\s*/foundry\s+(\w+)\s*(.*)$", re.MULTILINE | re.IGNORECASE)


def decide(event: events.LinearEvent, rules: TriggerRules) -> Intent:
    """The one thing Foundry should do about `event`."""
    if event.actor.id is not None and event.actor.id in rules.own_ids:
        return Ignore("event from Foundry's own app user")
    if event.actor.id is not None and event.actor.id in rules.bot_actor_ids:
        return Ignore("event from a bot actor")
    if isinstance(event, events.IssueEvent):
        return _on_issue(event, rules)
    if isinstance(event, events.CommentEvent):
        return _on_comment(event)
    if isinstance(event, events.AgentSessionEvent):
        return _on_agent_session(event)
    return Ignore(f"{event.type} events are not acted on")


def trigger_label_id(event: events.IssueEvent, rules: TriggerRules) -> str | None:
    """The id of the trigger label when the issue carries it now, else None."""
    for label in event.labels:
        if label.name.casefold() == rules.label.casefold() or label.id == rules.label_id:
            return label.id
    if rules.label_id is not None and rules.label_id in event.label_ids:
        return rules.label_id
    return None


def _on_issue(event: events.IssueEvent, rules: TriggerRules) -> Intent:
    if event.action == "remove":
        return StopRun(event.issue.id, "issue deleted", event.actor, tracker=event.issue.tracker)
    label_id = trigger_label_id(event, rules)
    if event.action == "create":
        if label_id is None:
            return Ignore("issue created without the trigger label")
        return OpenRun(event.issue, "label", event.actor, label_id=label_id)
    if event.action != "update":
        return Ignore(f"issue {event.action} is not acted on")
    if event.state_changed and event.state_type == "canceled":
        return StopRun(event.issue.id, "issue canceled", event.actor, tracker=event.issue.tracker)
    if event.state_changed and event.state_type == "completed":
        issue = event.issue
        return StopRun(issue.id, "issue completed", event.actor, tracker=issue.tracker, spare_with_pr=True)
    return _on_label_change(event, rules, label_id)


def _on_label_change(event: events.IssueEvent, rules: TriggerRules, label_id: str | None) -> Intent:
    before = event.label_ids_before
    if before is None:
        return Ignore("issue update does not change the trigger label")
    if label_id is not None and label_id not in before:
        return OpenRun(event.issue, "label", event.actor, label_id=label_id)
    removed = before - event.label_ids
    if label_id is None and removed:
        if rules.label_id is not None and rules.label_id not in removed:
            return Ignore("removed labels do not include the trigger label")
        issue = event.issue
        return StopRun(issue.id, "trigger label removed", event.actor, removed, tracker=issue.tracker)
    return Ignore("issue update does not change the trigger label")


def _on_comment(event: events.CommentEvent) -> Intent:
    if event.action != "create":
        return Ignore(f"comment {event.action} is not acted on")
    match = _COMMAND.search(event.body)
    if match is None:
        return Ignore("comment has no /foundry command")
    verb, rest = match.group(1).lower(), match.group(2).strip()
    if verb == "start":
        return OpenRun(event.issue, "comment", event.actor)
    if verb == "repo":
        return _choose(event.issue, rest, event.actor)
    if verb in Decision.__members__.values():
        return Decide(event.issue.id, Decision(verb), event.actor, note=rest, tracker=event.issue.tracker)
    return Ignore(f"unknown command /foundry {verb}")


_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_PROMPT_REPOSITORY = re.compile(r"^\s*(?:/foundry\s+)?repo\s+(\S+)\s*$", re.IGNORECASE)


def _choose(issue: IssueRef, named: str, actor: Actor, session_id: str | None = None) -> Intent:
    name = named.split()[0] if named.split() else ""
    if not _REPOSITORY.match(name) or len(name) > 255:
        return Ignore("/foundry repo needs a repository as owner/name")
    return ChooseRepository(issue.id, name, actor, session_id, tracker=issue.tracker)


# A prompt that is only a decision ("approve", "/foundry reject", "Approve.") decides like a comment.
_PROMPT_DECISION = re.compile(r"^\s*(?:/foundry\s+)?(approve|reject)\b[\s.!]*$", re.IGNORECASE)


def _on_agent_session(event: events.AgentSessionEvent) -> Intent:
    if event.action == "created":
        return OpenRun(event.issue, "agent_session", event.actor, agent_session_id=event.session_id)
    if event.action != "prompted":
        return Ignore(f"agent session {event.action} is not acted on")
    if event.signal == "stop":
        return StopSession(event.issue.id, event.actor, event.session_id)
    if not event.prompt:
        return Ignore("agent session prompt is empty")
    chosen = _PROMPT_REPOSITORY.match(event.prompt)
    if chosen is not None:
        return _choose(event.issue, chosen.group(1), event.actor, event.session_id)
    decision = _PROMPT_DECISION.match(event.prompt)
    if decision is not None:
        verdict = Decision(decision.group(1).lower())
        return Decide(event.issue.id, verdict, event.actor, "", event.session_id, event.activity_id)
    return AddPrompt(event.issue.id, event.prompt, event.actor, event.session_id, event.activity_id)


@dataclass(frozen=True)
class SlackDecide:
    """A Slack button click on a run's approval message."""

    run_id: str
    decision: Decision
    slack_user_id: str
    slack_user_name: str | None = None


Intent = OpenRun | StopRun | StopSession | Decide | SlackDecide | AddPrompt | ChooseRepository | Ignore
