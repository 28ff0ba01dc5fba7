"""`GET /openapi.json`: an OpenAPI 3.1 document of every route the app serves, read from the app.

Paths and methods come from the app's own routes, so the document cannot miss one; what each
operation does is the hand-written summary below (a route without one says so, and a test fails).
Each operation also declares its body, its path, query and header parameters, and every status it
may answer (errors with the Error schema), so that a schema-driven fuzzer reaches every input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from importlib import metadata
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from foundry.domain.statuses import RunStatus
from foundry.inbound import agents as bodies
from foundry.inbound import text
from foundry.services import deliveries as delivery_reads
from foundry.services import runs
from foundry.web import api

SUMMARIES: dict[tuple[str, str], str] = {
    ("GET", "/"): "The read-only page: recent runs and deliveries",
    ("GET", "/runs/{run_id}"): "The read-only page of one run: its timeline and deliveries",
    ("GET", "/healthz"): "Liveness: the process is up",
    ("GET", "/readyz"): "Readiness: the database answers and its schema is at head",
    ("GET", "/metrics"): "Prometheus metrics, read from the database at scrape time",
    ("GET", "/openapi.json"): "This document",
    ("POST", "/webhooks/linear"): "A Linear webhook delivery, signed by Linear-Signature",
    ("POST", "/webhooks/github"): "A GitHub webhook delivery, signed by X-Hub-Signature-256",
    ("POST", "/webhooks/slack"): "A Slack interaction (button click), signed by X-Slack-Signature",
    ("GET", "/api/runs"): "Runs, newest first; filters status and issue, paged by limit and offset",
    ("GET", "/api/runs/{run_id}"): "One run with its timeline and deliveries",
    ("POST", "/api/runs/{run_id}/approve"): "Approve a run awaiting approval, as the operator",
    ("POST", "/api/runs/{run_id}/reject"): "Reject a run awaiting approval, as the operator",
    ("POST", "/api/runs/{run_id}/stop"): "Stop an active run, as the operator",
    ("POST", "/api/runs/{run_id}/retry"): "Open a new run for a finished run's issue",
    ("POST", "/api/runs/{run_id}/events"): "An agent reports on a run dispatched to it (agent token)",
    ("GET", "/api/agents"): "Registered agents",
    ("POST", "/api/agents"): "Register an agent",
    ("POST", "/api/agents/{name}/tokens"): "Issue the agent's token (revoking the old one); shown once",
    ("DELETE", "/api/agents/{name}/tokens"): "Revoke the agent's token",
    ("GET", "/api/deliveries"): "Recent inbound deliveries and their verdicts; filters source and limit",
    ("GET", "/oauth/linear/install"): "Install Foundry as a Linear app: redirects to Linear's consent page",
    ("GET", "/oauth/linear/callback"): "Linear's redirect back: the code exchanged, the app's token stored",
}
MISSING_SUMMARY = "(no summary written yet)"
PAGES = {"/", "/runs/{run_id}"}
INSTALL, INSTALLED = "/oauth/linear/install", "/oauth/linear/callback"
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "FOUNDRY_API_TOKEN for /api/* and the pages; an agent's own token for run events.",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "The pages and the Linear install from a browser: any user name, FOUNDRY_API_TOKEN"
        " as the password.",
    },
}
_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int, **more: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **more}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "Action": {
        "type": "object",
        "description": "An operator action; the actor defaults to `operator`.",
        "properties": {"actor": _text(api.MAX_ACTOR)},
    },
    # The API's own bodies are described by the very models that parse them.
    "NewAgent": bodies.NewAgent.model_json_schema(),
    "AgentEvent": bodies.AgentEvent.model_json_schema(),
    "LinearWebhook": {
        "type": "object",
        "description": "A Linear webhook payload (only the fields Foundry reads are listed).",
        "properties": {
            "type": _text(32),
            "action": _text(31),
            "webhookTimestamp": {"type": "integer", "minimum": 0, "maximum": text.TIMESTAMP_MS_MAX},
            "data": {"type": "object"},
        },
        "required": ["type", "webhookTimestamp"],
    },
    "GitHubWebhook": {
        "type": "object",
        "description": "A GitHub webhook payload (ping, pull_request, pull_request_review, check_suite).",
        "properties": {"action": _text(32), "repository": {"type": "object"}},
    },
    "SlackInteraction": {
        "type": "object",
        "properties": {"payload": {"type": "string", "description": "The interaction, as JSON."}},
        "required": ["payload"],
    },
}
_JSON = "application/json"
BODIES: dict[tuple[str, str], tuple[str, str, bool]] = {  # (schema, media type, required)
    ("POST", "/webhooks/linear"): ("LinearWebhook", _JSON, True),
    ("POST", "/webhooks/github"): ("GitHubWebhook", _JSON, True),
    ("POST", "/webhooks/slack"): ("SlackInteraction", "application/x-www-form-urlencoded", True),
    ("POST", "/api/runs/{run_id}/approve"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/reject"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/stop"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/retry"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/events"): ("AgentEvent", _JSON, True),
    ("POST", "/api/agents"): ("NewAgent", _JSON, True),
}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": runs.MAX_PAGE}
QUERIES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/api/runs"): {
        "status": {"enum": [status.value for status in RunStatus]},
        "issue": {"type": "string", "description": "A Linear issue id or identifier (ENG-42)."},
        "limit": _LIMIT,
        "offset": {"type": "integer", "minimum": 0, "maximum": 10**9},
    },
    ("GET", "/api/deliveries"): {
        "source": {"enum": list(delivery_reads.SOURCES)},
        "limit": _LIMIT,
    },
    ("GET", INSTALLED): {
        "code": _text(512, description="The authorization code Linear issued."),
        "state": _text(256, description="The signed state the install sent to Linear."),
        "error": _text(64, description="Why Linear sent the browser back without a code (access_denied)."),
        "error_description": _text(1024),
    },
}
_SIGNED = {"type": "string", "maxLength": 255}
HEADERS: dict[str, dict[str, bool]] = {  # path -> header -> required
    "/webhooks/linear": {"Linear-Signature": True, "Linear-Delivery": True},
    "/webhooks/github": {
        "X-Hub-Signature-256": True,
        "X-GitHub-Event": True,
        "X-GitHub-Delivery": True,
        "X-GitHub-Hook-ID": False,
    },
    "/webhooks/slack": {"X-Slack-Signature": True, "X-Slack-Request-Timestamp": True},
}
# What each operation answers when it succeeds; every other status it may answer is an Error.
SUCCESS: dict[tuple[str, str], int] = {
    ("POST", "/api/runs/{run_id}/retry"): 201,
    ("POST", "/api/runs/{run_id}/events"): 202,
    ("POST", "/api/agents"): 201,
    ("POST", "/api/agents/{name}/tokens"): 201,
    ("GET", INSTALL): 303,
}
# Each status and the condition for it, as `(status, applies)`.
_ERRORS: tuple[tuple[int, Callable[[str, str], bool]], ...] = (
    (400, lambda m, p: True),  # a NUL or lone surrogate in the path, query or headers
    (401, lambda m, p: p.startswith(("/api/", "/webhooks/")) or p in PAGES or p == INSTALL),
    (403, lambda m, p: p.endswith("/events") or p == INSTALL),  # the install without an operator token
    (404, lambda m, p: "{" in p),
    (408, lambda m, p: m == "POST"),
    (409, lambda m, p: m == "POST" and p.startswith("/api/")),
    (413, lambda m, p: m == "POST"),
    (422, lambda m, p: m == "POST" and p.startswith("/api/")),
    (500, lambda m, p: True),
    (502, lambda m, p: p == INSTALLED),  # Linear did not exchange the code
    (503, lambda m, p: p not in {"/healthz", "/openapi.json"}),  # the database, or a secret unset
)
_CONTENT = {
    "/metrics": "text/plain",
    "/": "text/html",
    "/runs/{run_id}": "text/html",
    INSTALLED: "text/html",
}


async def openapi(request: Request) -> Response:
    return JSONResponse(document(request.app.routes))


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = _PARAMETER.sub(r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = operation(method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Foundry", "version": _version()},
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": SCHEMAS},
    }


def operation(method: str, path: str) -> dict[str, Any]:
    key = (method, path)
    described: dict[str, Any] = {
        "summary": SUMMARIES.get(key, MISSING_SUMMARY),
        "security": security(path),
        "responses": responses(method, path),
    }
    parameters = _parameters(method, path)
    if parameters:
        described["parameters"] = parameters
    if key in BODIES:
        schema, media_type, required = BODIES[key]
        described["requestBody"] = {"required": required, "content": {media_type: {"schema": _ref(schema)}}}
    return described


def responses(method: str, path: str) -> dict[str, Any]:
    done, success = _success(method, path)
    answered: dict[str, Any] = {str(done): success}
    for status, applies in _ERRORS:
        if applies(method, path):
            answered[str(status)] = {
                "description": f'{HTTPStatus(status).phrase}: {{"error": "<one readable sentence>"}}.',
                "content": {_JSON: {"schema": _ref("Error")}},
            }
    return answered


def _success(method: str, path: str) -> tuple[int, dict[str, Any]]:
    status = SUCCESS.get((method, path), 200)
    if 300 <= status < 400:
        location = {"Location": {"description": "Where to go next.", "schema": {"type": "string"}}}
        return status, {"description": "Redirected.", "headers": location}
    media_type = _CONTENT.get(path, _JSON)
    done = {"type": "object"} if media_type == _JSON else {}
    return status, {"description": "Done.", "content": {media_type: {"schema": done}}}


def _parameters(method: str, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(path)
    ]
    for name, schema in QUERIES.get((method, path), {}).items():
        found.append({"name": name, "in": "query", "required": False, "schema": schema})
    for name, required in HEADERS.get(path, {}).items():
        found.append({"name": name, "in": "header", "required": required, "schema": _SIGNED})
    if method == "POST" and path.startswith("/api/"):
        key_schema = {"type": "string", "minLength": 1, "maxLength": 255}
        found.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": key_schema})
    return found


def security(path: str) -> list[dict[str, list[str]]]:
    """Who may call: the API takes a bearer; the pages a bearer or Basic (and are open without a
    token configured); receivers check signatures instead, and probes and scrapers carry nothing."""
    if path.startswith("/api/"):
        return [{"bearer": []}]
    if path in PAGES:
        return [{"bearer": []}, {"basic": []}, {}]
    if path == INSTALL:  # never open: it binds Foundry to a workspace
        return [{"bearer": []}, {"basic": []}]
    return []


def _version() -> str:
    try:
        return metadata.version("foundry")
    except metadata.PackageNotFoundError:
        return "0"
