"""The JSON Schemas `/openapi.json` declares: the bodies Foundry takes, and the answers it
declares in full (one run's view), as `components.schemas`."""

from __future__ import annotations

from typing import Any

from foundry.domain.statuses import RunStatus
from foundry.inbound import agents as bodies
from foundry.inbound import text as inbound_text
from foundry.services import runs
from foundry.web import access, api, sessions


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def text(max_length: int, **more: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **more}


def _maybe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object whose every listed property is always present (a missing value is null)."""
    described = {"description": description} if description else {}
    return {"type": "object", **described, "properties": properties, "required": list(properties)}


_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
_TEXT, _NUMBER = {"type": ["string", "null"]}, {"type": ["integer", "null"]}
_INSTANT = {"type": "string", "format": "date-time"}
_NO_INSTANT = _maybe(_INSTANT)
_STRINGS = {"type": "array", "items": _STRING}
_RUN = {
    "id": _STRING,
    "tracker": _STRING,
    "issue_id": _STRING,
    "issue_key": _STRING,
    # Linear's own names for the issue's id and key: null on runs of other trackers.
    "linear_issue_id": _TEXT,
    "linear_identifier": _TEXT,
    "title": _STRING,
    "status": {"enum": [status.value for status in RunStatus]},
    "trigger": _STRING,
    "attempt": _INTEGER,
    "agent_name": _TEXT,
    "pr_number": _NUMBER,
    "pr_url": _TEXT,
    "cost_usd": {"type": "number"},
    "required_roles": _STRINGS,
    "created_at": _INSTANT,
    "updated_at": _INSTANT,
    "repository": _TEXT,
    "awaiting": {"description": "What the run waits for from a person (repository)", **_TEXT},
    "agent_session_id": _TEXT,
    "issue_url": _TEXT,
    "pr_repository": _TEXT,
    "description": _TEXT,
}
_EFFECT = {
    "key": _STRING,
    "kind": _STRING,
    "state": {"enum": ["pending", "sent", "skipped", "failed"]},
    "attempts": _INTEGER,
    "next_attempt_at": {"description": "When it is tried next; only while pending.", **_NO_INSTANT},
    "last_error": {"description": "Why the last attempt failed, secrets scrubbed.", **_TEXT},
    "sent_at": _NO_INSTANT,
    "external_id": {
        "description": "What it made: a Linear comment, activity or session id, a Slack ts, the job's"
        " idempotency key, a redelivered delivery",
        **_TEXT,
    },
    "summary": {"description": "The effect in one readable line.", **_STRING},
    "payload": {"type": "object", "description": "What is sent, secrets scrubbed (a manual agent's job)."},
}
_EVENT = {
    "seq": _INTEGER,
    "at": _INSTANT,
    "kind": _STRING,
    "actor": _TEXT,
    "sentence": {"description": "The event in one readable sentence.", **_STRING},
    "data": {"type": "object"},
    "delivery_id": _TEXT,
}
_DELIVERY = {
    "id": _STRING,
    "source": _STRING,
    "delivery_key": _STRING,
    "event": _STRING,
    "verdict": _STRING,
    "reason": _TEXT,
    "run_id": _TEXT,
    "received_at": _INSTANT,
}
_PLAN = {
    "summary": _STRING,
    "steps": _STRINGS,
    "paths": _STRINGS,
    "criteria": _STRINGS,
    "required_roles": _STRINGS,
    "backend": _STRING,
    "notes": _STRINGS,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "Action": {
        "type": "object",
        "description": "An operator action; the actor defaults to `operator`.",
        "properties": {"actor": text(api.MAX_ACTOR)},
    },
    # The API's own bodies are described by the very models that parse them.
    "NewAgent": bodies.NewAgent.model_json_schema(),
    "AgentEvent": bodies.AgentEvent.model_json_schema(),
    "LinearWebhook": {
        "type": "object",
        "description": "A Linear webhook payload (only the fields Foundry reads are listed).",
        "properties": {
            "type": text(32),
            "action": text(31),
            "webhookTimestamp": {"type": "integer", "minimum": 0, "maximum": inbound_text.TIMESTAMP_MS_MAX},
            "data": {"type": "object"},
        },
        "required": ["type", "webhookTimestamp"],
    },
    "GitHubWebhook": {
        "type": "object",
        "description": "A GitHub webhook payload (ping, pull_request, pull_request_review, check_suite).",
        "properties": {"action": text(32), "repository": {"type": "object"}},
    },
    "SlackInteraction": {
        "type": "object",
        "properties": {"payload": {"type": "string", "description": "The interaction, as JSON."}},
        "required": ["payload"],
    },
    # The answer declared in full: one run's view.
    "Effect": _object(_EFFECT, "An outbound effect the run decided, and what became of it."),
    "TimelineEvent": _object(_EVENT),
    "Delivery": _object(_DELIVERY),
    "RunView": _object(
        {
            "run": _object(_RUN),
            "repository": _maybe(_object({"name": _STRING, "reason": _TEXT})),
            "plan": _maybe(_object(_PLAN)),
            "effects": {
                "type": "array",
                "maxItems": runs.MAX_EFFECTS,
                "description": f"Oldest first; the newest {runs.MAX_EFFECTS} when there are more.",
                "items": ref("Effect"),
            },
            "timeline": {"type": "array", "items": ref("TimelineEvent")},
            "deliveries": {"type": "array", "items": ref("Delivery")},
            "links": _object({"issue": _TEXT, "pull_request": _TEXT, "agent_session": _TEXT}),
        },
        "One view of a run: the same in the API, the page and `foundry runs show --json`.",
    ),
    # The console's forms.
    "SignIn": {
        "type": "object",
        "description": "The sign-in form: the operator token, the name actions are recorded under, and"
        " the console path to go on to.",
        "properties": {
            "token": text(1024),
            "name": text(sessions.MAX_NAME),
            "next": text(access.MAX_NEXT),
        },
    },
    "ConsoleForm": {
        "type": "object",
        "description": "A console button's form: the viewer's CSRF token (a bearer needs none).",
        "properties": {"csrf": text(256)},
    },
}
