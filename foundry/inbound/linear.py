"""Linear webhook bodies: pydantic models of the fields Foundry reads, and their domain events."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundry.domain import events
from foundry.errors import BadRequest
from foundry.inbound import text


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# Lengths match the columns these values are stored in: a longer one is refused with a 400.
# (An actor is recorded in `run_events.actor`, 255 characters.)
class _Actor(_Model):
    id: str | None = Field(None, max_length=255)
    name: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=255)


class _Label(_Model):
    id: str = Field(max_length=64)
    name: str


class _State(_Model):
    type: str | None = None


class _IssueRef(_Model):
    id: str = Field(max_length=64)
    identifier: str = Field("", max_length=32)
    title: str = ""
    description: str | None = None
    url: str | None = None


class _Data(_Model):
    id: str | None = Field(None, max_length=64)
    identifier: str | None = Field(None, max_length=32)
    title: str | None = None
    description: str | None = None
    url: str | None = None
    label_ids: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, alias="labelIds")
    labels: list[_Label] = Field(default_factory=list)
    state: _State | None = None
    body: str | None = None
    issue_id: str | None = Field(None, alias="issueId", max_length=64)
    issue: _IssueRef | None = None
    user: _Actor | None = None


class _UpdatedFrom(_Model):
    label_ids: list[str] | None = Field(None, alias="labelIds")
    state_id: str | None = Field(None, alias="stateId")


class _AgentSession(_Model):
    id: str = Field(max_length=64)
    issue: _IssueRef | None = None
    creator: _Actor | None = None


class _ActivityContent(_Model):
    body: str | None = None


class _AgentActivity(_Model):
    id: str | None = Field(None, max_length=64)
    user_id: str | None = Field(None, alias="userId", max_length=255)
    content: _ActivityContent | None = None
    # "stop" when the person pressed Stop in the agent panel.
    signal: str | None = Field(None, max_length=32)


class Envelope(_Model):
    type: str = Field(max_length=32)
    action: str = Field("", max_length=31)
    actor: _Actor | None = None
    data: _Data | None = None
    updated_from: _UpdatedFrom | None = Field(None, alias="updatedFrom")
    webhook_timestamp: int = Field(
        alias="webhookTimestamp", ge=text.TIMESTAMP_MS_MIN, le=text.TIMESTAMP_MS_MAX
    )
    agent_session: _AgentSession | None = Field(None, alias="agentSession")
    agent_activity: _AgentActivity | None = Field(None, alias="agentActivity")
    # Foundry's own app user, named by agent-session deliveries (stored in `provider_tokens.actor_id`).
    app_user_id: str | None = Field(None, alias="appUserId", max_length=64)


def parse(body: bytes) -> Envelope:
    """The envelope of a Linear delivery, or `BadRequest` naming what is wrong with it."""
    try:
        return Envelope.model_validate(text.loads(body))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        raise BadRequest(f"Linear payload field {where}: {error['msg'].lower()}.") from exc


def to_event(envelope: Envelope) -> events.LinearEvent:
    actor = _actor(envelope.actor)
    if envelope.type == "Issue":
        return _issue_event(envelope, actor)
    if envelope.type == "Comment":
        return _comment_event(envelope, actor)
    if envelope.type == "AgentSessionEvent":
        return _agent_session_event(envelope)
    return events.UnsupportedEvent(envelope.type, actor)


def _actor(actor: _Actor | None) -> events.Actor:
    return events.Actor() if actor is None else events.Actor(actor.id, actor.name, actor.email)


def _require(value: Any, what: str) -> Any:
    if value is None:
        raise BadRequest(f"Linear payload is missing {what}.")
    return value


def _issue_event(envelope: Envelope, actor: events.Actor) -> events.IssueEvent:
    data = _require(envelope.data, "data")
    issue = events.IssueRef(
        _require(data.id, "data.id"),
        data.identifier or "",
        data.title or "",
        data.description,
        data.url,
    )
    before = envelope.updated_from
    return events.IssueEvent(
        action=envelope.action,
        issue=issue,
        actor=actor,
        labels=tuple(events.Label(label.id, label.name) for label in data.labels),
        label_ids=frozenset(data.label_ids),
        label_ids_before=None if before is None or before.label_ids is None else frozenset(before.label_ids),
        state_type=data.state.type if data.state else None,
        state_changed=before is not None and before.state_id is not None,
    )


def _comment_event(envelope: Envelope, actor: events.Actor) -> events.CommentEvent:
    data = _require(envelope.data, "data")
    ref = data.issue or _IssueRef(id=_require(data.issue_id, "data.issueId"))
    if actor.email is None and data.user is not None:
        actor = _actor(data.user)
    return events.CommentEvent(envelope.action, _issue_ref(ref), actor, data.body or "")


def _agent_session_event(envelope: Envelope) -> events.AgentSessionEvent:
    session = _require(envelope.agent_session, "agentSession")
    ref = _require(session.issue, "agentSession.issue")
    actor = _actor(session.creator)
    activity = envelope.agent_activity
    if activity is not None and activity.user_id is not None and activity.user_id != actor.id:
        # Someone other than the session's creator prompted: the payload names only their id.
        actor = events.Actor(activity.user_id)
    prompt = activity.content.body if activity and activity.content else None
    return events.AgentSessionEvent(
        envelope.action,
        _issue_ref(ref),
        actor,
        session.id,
        prompt,
        activity_id=activity.id if activity else None,
        signal=activity.signal if activity else None,
    )


def _issue_ref(ref: _IssueRef) -> events.IssueRef:
    return events.IssueRef(ref.id, ref.identifier, ref.title, ref.description, ref.url)
