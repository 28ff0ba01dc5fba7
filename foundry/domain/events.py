"""What a tracker's delivery says, as plain values the trigger rules can decide on.

The shapes are Linear's, Foundry's first tracker; another tracker's parser maps its events onto
them (an issue "create", "update" with the labels before and after, "remove"; a comment
"create") and names itself in `IssueRef.tracker`."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.domain import trackers


@dataclass(frozen=True)
class Actor:
    id: str | None = None
    name: str | None = None
    email: str | None = None

    def describe(self) -> str:
        return self.email or self.name or self.id or "unknown"


@dataclass(frozen=True)
class IssueRef:
    id: str
    identifier: str
    title: str = ""
    description: str | None = None
    url: str | None = None
    tracker: str = trackers.LINEAR


@dataclass(frozen=True)
class Label:
    id: str
    name: str


@dataclass(frozen=True)
class IssueEvent:
    """A Linear `Issue` create, update or remove."""

    action: str
    issue: IssueRef
    actor: Actor
    labels: tuple[Label, ...] = ()
    label_ids: frozenset[str] = frozenset()
    # `updatedFrom.labelIds`: None when this update did not touch the labels.
    label_ids_before: frozenset[str] | None = None
    state_type: str | None = None
    state_changed: bool = False


@dataclass(frozen=True)
class CommentEvent:
    """A Linear `Comment` on an issue."""

    action: str
    issue: IssueRef
    actor: Actor
    body: str = ""


@dataclass(frozen=True)
class AgentSessionEvent:
    """A Linear `AgentSessionEvent`: Foundry's agent user was delegated an issue, or prompted."""

    action: str
    issue: IssueRef
    actor: Actor
    session_id: str = ""
    prompt: str | None = None
    # The prompt activity's own id (a prompt is acknowledged once, keyed by it), and its signal.
    activity_id: str | None = None
    signal: str | None = None


@dataclass(frozen=True)
class UnsupportedEvent:
    """A well-formed delivery of a type Foundry does not act on."""

    type: str
    actor: Actor = field(default_factory=Actor)


LinearEvent = IssueEvent | CommentEvent | AgentSessionEvent | UnsupportedEvent
