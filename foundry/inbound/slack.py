"""Slack interactivity payloads: a `block_actions` click on one of Foundry's decision buttons."""

from __future__ import annotations

from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundry.domain import messages, triggers
from foundry.domain.triggers import Decision
from foundry.errors import BadRequest
from foundry.inbound import text

_DECISIONS = {
    messages.APPROVE: Decision.APPROVE,
    messages.REJECT: Decision.REJECT,
    messages.STOP: Decision.STOP,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Lengths match the columns these values are stored in: a longer one is refused with a 400,
# not truncated (a truncated key could collide) and never left to fail in the database.
# `{type}.{action_id}` is the delivery's event (64 characters); a name is an actor (255).
_ID = Field(max_length=64)
_NAME = Field(None, max_length=255)


class _User(_Model):
    id: str = _ID
    username: str | None = _NAME
    name: str | None = _NAME


class _Action(_Model):
    action_id: str = Field(max_length=31)
    value: str | None = Field(None, max_length=64)
    action_ts: str | None = Field(None, max_length=64)


class Interaction(_Model):
    type: str = Field(max_length=32)
    user: _User | None = None
    actions: list[_Action] = []


_INVALID = "The Slack payload is not valid interaction JSON."


def parse(body: bytes) -> Interaction:
    """The form-encoded `payload=<json>` Slack posts, or `BadRequest` naming what is wrong."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The body is not a form-encoded Slack payload.") from exc
    payload = form.get("payload")
    if not payload:
        raise BadRequest("The Slack body has no payload field.")
    try:
        return Interaction.model_validate(text.loads(payload[0], invalid=_INVALID))
    except ValidationError as exc:
        raise BadRequest(_INVALID) from exc


def delivery_key(interaction: Interaction) -> str:
    """The action's `action_ts` + user + run: a click Slack retries keeps all three."""
    action = interaction.actions[0] if interaction.actions else None
    user = interaction.user.id if interaction.user else ""
    if action is None:
        return f"{interaction.type}:{user}"
    return f"{action.action_ts}:{user}:{action.value}"


def to_intent(interaction: Interaction) -> triggers.Intent:
    if interaction.type != "block_actions":
        return triggers.Ignore(f"Slack {interaction.type} interactions are not acted on")
    if interaction.user is None or not interaction.actions:
        return triggers.Ignore("the interaction names no user or action")
    action = interaction.actions[0]
    decision = _DECISIONS.get(action.action_id)
    if decision is None or not action.value:
        return triggers.Ignore(f"action {action.action_id} is not a Foundry decision")
    user = interaction.user
    return triggers.SlackDecide(action.value, decision, user.id, user.username or user.name)
