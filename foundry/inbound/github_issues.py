"""GitHub `issues` and `issue_comment` webhook bodies, validated, as the domain events triggers decide on.

The GitHub Issues counterpart of `inbound/linear.py`: the same `IssueEvent` and `CommentEvent`, so
`triggers.decide` opens, stops and decides runs for either tracker by the same rules. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundry.domain import events, trackers
from foundry.errors import BadRequest
from foundry.inbound import text

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

EVENTS = ("issues", "issue_comment")
# As in `inbound/github.py`: `{event}.{action}` must fit `webhook_deliveries.event` (64).
MAX_EVENT = 31
# GitHub's database ids (users, labels, issues) are 64-bit; as text they stay under 20 characters.
INT64_MAX = 2**63 - 1

IssuesEvent = events.IssueEvent | events.CommentEvent | events.UnsupportedEvent


@dataclass(frozen=True)
class Parsed:
    """A GitHub Issues delivery: its domain event and the repository (`owner/name`) it came from."""

    event: IssuesEvent
    repository: str
    # GitHub's own action (`labeled`), which the delivery is recorded under.
    action: str = ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Lengths match the columns these values land in: `run_events.actor` (255), an issue id (64).
class _User(_Model):
    login: str = Field(max_length=255)
    id: int = Field(ge=1, le=INT64_MAX)


class _Label(_Model):
    id: int = Field(ge=1, le=INT64_MAX)
    name: str


class _PullLink(_Model):
    html_url: str | None = None


class _Issue(_Model):
    node_id: str = Field(min_length=1, max_length=64)
    number: int = Field(ge=1, le=text.INT32_MAX)
    title: str = ""
    body: str | None = None
    html_url: str | None = None
    labels: list[_Label] = []
    state_reason: str | None = Field(None, max_length=32)
    # Present only when the "issue" is a pull request: GitHub sends PR comments as `issue_comment`.
    pull_request: _PullLink | None = None


class _Comment(_Model):
    id: int = Field(ge=1, le=INT64_MAX)
    body: str = ""


class _Repository(_Model):
    full_name: str = Field(max_length=200)


class _Envelope(_Model):
    """What every delivery carries: enough to name an event Foundry does not act on."""

    action: str = Field("", max_length=32)
    repository: _Repository | None = None
    sender: _User | None = None


class Payload(_Model):
    action: str = Field("", max_length=32)
    issue: _Issue
    repository: _Repository
    sender: _User
    # `labeled` / `unlabeled`: the label added or removed.
    label: _Label | None = None
    comment: _Comment | None = None


def parse(event: str, body: bytes) -> Parsed:
    """The domain event of a delivery with `X-GitHub-Event: event`, or `BadRequest` naming what is wrong."""
    if len(event) > MAX_EVENT:
        raise BadRequest(f"The X-GitHub-Event header is longer than {MAX_EVENT} characters.")
    if event not in EVENTS:
        envelope = _validate(_Envelope, body)
        repository = envelope.repository.full_name if envelope.repository else ""
        return Parsed(events.UnsupportedEvent(event, _actor(envelope.sender)), repository, envelope.action)
    payload = _validate(Payload, body)
    actor = _actor(payload.sender)
    repository, action = payload.repository.full_name, payload.action
    if event == "issues":
        return Parsed(_issue_event(payload, actor), repository, action)
    return Parsed(_comment_event(payload, actor), repository, action)


def _validate(model: type[M], body: bytes) -> M:
    loaded = text.loads(body, invalid="The GitHub payload is not valid JSON.")
    if not isinstance(loaded, dict):
        raise BadRequest("The GitHub payload is not a JSON object.")
    try:
        return model.model_validate(loaded)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise BadRequest(f"GitHub payload field {where}: {error['msg'].lower()}.") from exc


def _actor(sender: _User | None) -> events.Actor:
    return events.Actor() if sender is None else events.Actor(str(sender.id), sender.login)


def _issue_ref(payload: Payload) -> events.IssueRef:
    issue = payload.issue
    identifier = f"{payload.repository.full_name}#{issue.number}"
    return events.IssueRef(
        issue.node_id, identifier, issue.title, issue.body, issue.html_url, trackers.GITHUB
    )


def _issue_event(payload: Payload, actor: events.Actor) -> events.IssueEvent:
    labels = tuple(events.Label(str(label.id), label.name) for label in payload.issue.labels)
    ids = frozenset(label.id for label in labels)
    event = events.IssueEvent(payload.action, _issue_ref(payload), actor, labels, ids)
    translate = _ISSUE_ACTIONS.get(payload.action)
    # Any other action (edited, reopened, assigned, ...) keeps GitHub's name: decide() ignores it.
    return event if translate is None else translate(event, payload)


def _opened(event: events.IssueEvent, payload: Payload) -> events.IssueEvent:
    return replace(event, action="create")


def _labeled(event: events.IssueEvent, payload: Payload) -> events.IssueEvent:
    added = str(_require(payload.label, "label").id)
    return replace(event, action="update", label_ids_before=event.label_ids - {added})


def _unlabeled(event: events.IssueEvent, payload: Payload) -> events.IssueEvent:
    removed = str(_require(payload.label, "label").id)
    return replace(event, action="update", label_ids_before=event.label_ids | {removed})


def _closed(event: events.IssueEvent, payload: Payload) -> events.IssueEvent:
    """Closed as not planned (or a duplicate) is Linear's canceled; closed as completed, its
    completed — which is also how a merged PR's "Closes #42" closes the issue."""
    completed = payload.issue.state_reason in (None, "completed")
    state = "completed" if completed else "canceled"
    return replace(event, action="update", state_type=state, state_changed=True)


def _deleted(event: events.IssueEvent, payload: Payload) -> events.IssueEvent:
    return replace(event, action="remove")


_ISSUE_ACTIONS: dict[str, Callable[[events.IssueEvent, Payload], events.IssueEvent]] = {
    "opened": _opened,
    "labeled": _labeled,
    "unlabeled": _unlabeled,
    "closed": _closed,
    "deleted": _deleted,
}


def _comment_event(payload: Payload, actor: events.Actor) -> events.CommentEvent | events.UnsupportedEvent:
    if "pull_request" in payload.issue.model_fields_set:
        return events.UnsupportedEvent("issue_comment on a pull request", actor)
    comment = _require(payload.comment, "comment")
    # `edited` and `deleted` keep GitHub's name: decide() acts only on a new comment.
    action = "create" if payload.action == "created" else payload.action
    return events.CommentEvent(action, _issue_ref(payload), actor, comment.body)


def _require(value: T | None, what: str) -> T:
    if value is None:
        raise BadRequest(f"The GitHub payload has no {what}.")
    return value
