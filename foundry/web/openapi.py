"""`GET /openapi.json`: an OpenAPI 3.1 document of every route the app serves, read from the app.

Paths and methods come from the app's own routes, so the document cannot miss one; what each
operation does is the hand-written summary below (a route without one says so, and a test fails).
Each operation also declares its body, its path, query and header parameters, and every status it
may answer (errors with the Error schema), so that a schema-driven fuzzer reaches every input.
The schemas themselves are `web.schemas`.
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
from foundry.services import deliveries as delivery_reads
from foundry.services import runs
from foundry.web import access, schemas, sessions

SUMMARIES: dict[tuple[str, str], str] = {
    ("GET", "/"): "The console: runs with counts by status, filters and keyset paging",
    ("GET", "/runs/{run_id}"): "The console's page of one run: plan, effects, timeline, deliveries, actions",
    ("GET", "/deliveries"): "The console's deliveries: recent ones with verdicts, refused ones by reason",
    ("GET", "/fragments/runs"): "The runs list's live part, polled by the console's script",
    ("GET", "/fragments/runs/{run_id}"): "A run page's live part, polled by the console's script",
    ("GET", "/fragments/deliveries"): "The deliveries page's live part, polled by the console's script",
    ("POST", "/runs/{run_id}/approve"): "Approve, from the console's form, as the signed-in operator",
    ("POST", "/runs/{run_id}/reject"): "Reject, from the console's form, as the signed-in operator",
    ("POST", "/runs/{run_id}/stop"): "Stop, from the console's form, as the signed-in operator",
    ("POST", "/runs/{run_id}/retry"): "Retry, from the console's form, as the signed-in operator",
    ("GET", "/sign-in"): "The console's sign-in form",
    ("POST", "/sign-in"): "Sign in with the operator token: sets the session cookie",
    ("POST", "/sign-out"): "Sign out: clears the session cookie",
    ("GET", "/static/{name}"): "The console's own stylesheet and script",
    ("GET", "/healthz"): "Liveness: the process is up",
    ("GET", "/readyz"): "Readiness: the database answers and its schema is at head",
    ("GET", "/metrics"): "Prometheus metrics, read from the database at scrape time",
    ("GET", "/openapi.json"): "This document",
    ("POST", "/webhooks/linear"): "A Linear webhook delivery, signed by Linear-Signature",
    ("POST", "/webhooks/github"): "A GitHub webhook delivery, signed by X-Hub-Signature-256",
    ("POST", "/webhooks/slack"): "A Slack interaction (button click), signed by X-Slack-Signature",
    ("GET", "/api/runs"): "Runs, newest first; filters status, issue and repository, paged by cursor",
    ("GET", "/api/runs/{run_id}"): "One run, by id or the 8-hex-digit short id: its repository and why, plan,"
    " effects, timeline in sentences, deliveries and links",
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
# The console: pages a browser is sent to sign in from, the fragments their script polls, and the
# forms its buttons post (each with the viewer's CSRF token).
CONSOLE_PAGES = {"/", "/runs/{run_id}", "/deliveries"}
FRAGMENTS = {"/fragments/runs", "/fragments/runs/{run_id}", "/fragments/deliveries"}
ACTIONS = {f"/runs/{{run_id}}/{action}" for action in ("approve", "reject", "stop", "retry")}
SIGN_IN, SIGN_OUT, STATIC = "/sign-in", "/sign-out", "/static/{name}"
PAGES = CONSOLE_PAGES | FRAGMENTS | ACTIONS | {SIGN_OUT}
# Where a short id may name several runs.
RUN_READS = {"/api/runs/{run_id}", "/runs/{run_id}", "/fragments/runs/{run_id}"}
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
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": sessions.COOKIE,
        "description": "The console's session, set by POST /sign-in (with FOUNDRY_SECRET_KEY set).",
    },
}
_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_JSON, _FORM = "application/json", "application/x-www-form-urlencoded"
# The operations whose success body is declared in full.
ANSWERS: dict[tuple[str, str], str] = {("GET", "/api/runs/{run_id}"): "RunView"}
BODIES: dict[tuple[str, str], tuple[str, str, bool]] = {  # (schema, media type, required)
    ("POST", "/webhooks/linear"): ("LinearWebhook", _JSON, True),
    ("POST", "/webhooks/github"): ("GitHubWebhook", _JSON, True),
    ("POST", "/webhooks/slack"): ("SlackInteraction", _FORM, True),
    ("POST", "/api/runs/{run_id}/approve"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/reject"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/stop"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/retry"): ("Action", _JSON, False),
    ("POST", "/api/runs/{run_id}/events"): ("AgentEvent", _JSON, True),
    ("POST", "/api/agents"): ("NewAgent", _JSON, True),
    ("POST", SIGN_IN): ("SignIn", _FORM, False),
    ("POST", SIGN_OUT): ("ConsoleForm", _FORM, False),
    **{("POST", path): ("ConsoleForm", _FORM, False) for path in sorted(ACTIONS)},
}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": runs.MAX_PAGE}
_STATUS = {"enum": [status.value for status in RunStatus]}
_RUN_FILTERS: dict[str, dict[str, Any]] = {
    "status": _STATUS,
    "repository": schemas.text(200, description="owner/name"),
    "issue": schemas.text(200, description="A Linear issue id or identifier (ENG-42)."),
    "q": schemas.text(200, description="Part of the title or identifier."),
    "before": schemas.text(300, description="The Older link's cursor: <created_at ISO>,<run id>."),
    "limit": _LIMIT,
}
_SOURCE = {"source": {"enum": list(delivery_reads.SOURCES)}}
QUERIES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/"): _RUN_FILTERS,
    ("GET", "/fragments/runs"): _RUN_FILTERS,
    ("GET", "/deliveries"): _SOURCE,
    ("GET", "/fragments/deliveries"): _SOURCE,
    ("GET", "/runs/{run_id}"): {"notice": schemas.text(64, description="What the last action did.")},
    ("GET", SIGN_IN): {
        "next": schemas.text(access.MAX_NEXT, description="The console path to go on to."),
        "failed": {"enum": ["1"]},
        "prompt": {"enum": ["basic"], "description": "Ask the browser for Basic credentials instead."},
    },
    ("GET", "/api/runs"): {
        "status": _STATUS,
        "issue": schemas.text(200, description="A Linear issue id or identifier (ENG-42)."),
        "repository": schemas.text(200, description="owner/name"),
        "before": schemas.text(300, description="next_before of a page: the runs older than it."),
        "after": schemas.text(300, description="prev_after of a page: the runs newer than it."),
        "limit": _LIMIT,
        "offset": {
            "type": "integer",
            "minimum": 0,
            "maximum": runs.MAX_OFFSET,
            "description": "Rows to skip; prefer the cursors, whose cost does not grow.",
        },
    },
    ("GET", "/api/deliveries"): {
        **_SOURCE,
        "limit": _LIMIT,
        "before": schemas.text(300, description="next_before of a page: the deliveries older than it."),
    },
    ("GET", INSTALLED): {
        "code": schemas.text(512, description="The authorization code Linear issued."),
        "state": schemas.text(256, description="The signed state the install sent to Linear."),
        "error": schemas.text(
            64, description="Why Linear sent the browser back without a code (access_denied)."
        ),
        "error_description": schemas.text(1024),
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
    ("POST", SIGN_IN): 303,
    ("POST", SIGN_OUT): 303,
    **{("POST", path): 303 for path in sorted(ACTIONS)},
}
# Pages that may also send the browser on with a 303: to sign in, or (signed in) past the form.
ALSO_REDIRECT = {("GET", path) for path in CONSOLE_PAGES | {SIGN_IN}}
# Each status and the condition for it, as `(status, applies)`.
_ERRORS: tuple[tuple[int, Callable[[str, str], bool]], ...] = (
    (400, lambda m, p: True),  # a NUL or lone surrogate in the path, query or headers
    (401, lambda m, p: p.startswith(("/api/", "/webhooks/")) or p in PAGES | {SIGN_IN, INSTALL}),
    # An agent's token for another's run; the install without an operator token; the console
    # without a token off loopback, or a form not from its own page.
    (403, lambda m, p: p.endswith("/events") or p in PAGES | {SIGN_IN, INSTALL}),
    (404, lambda m, p: "{" in p),
    (408, lambda m, p: m == "POST"),
    # A POST meets another in flight or its own state; a run's view, a short id several runs share.
    (409, lambda m, p: (m == "POST" and p.startswith("/api/")) or p in RUN_READS or p in ACTIONS),
    (413, lambda m, p: m == "POST"),
    (422, lambda m, p: m == "POST" and p.startswith("/api/")),
    (500, lambda m, p: True),
    (502, lambda m, p: p == INSTALLED),  # Linear did not exchange the code
    (503, lambda m, p: p not in {"/healthz", "/openapi.json", STATIC}),  # the database, or a secret unset
)
_CONTENT = {
    "/metrics": "text/plain",
    INSTALLED: "text/html",
    SIGN_IN: "text/html",
    STATIC: "text/css",  # or text/javascript: see `_success`
    **{path: "text/html" for path in CONSOLE_PAGES | FRAGMENTS},
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
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": schemas.SCHEMAS},
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
        described["requestBody"] = {
            "required": required,
            "content": {media_type: {"schema": schemas.ref(schema)}},
        }
    return described


def responses(method: str, path: str) -> dict[str, Any]:
    done, success = _success(method, path)
    answered: dict[str, Any] = {str(done): success}
    if (method, path) in ALSO_REDIRECT:
        answered["303"] = _redirected()
    for status, applies in _ERRORS:
        if applies(method, path):
            answered[str(status)] = {
                "description": f'{HTTPStatus(status).phrase}: {{"error": "<one readable sentence>"}}.',
                "content": {_JSON: {"schema": schemas.ref("Error")}},
            }
    return answered


def _success(method: str, path: str) -> tuple[int, dict[str, Any]]:
    status = SUCCESS.get((method, path), 200)
    if 300 <= status < 400:
        return status, _redirected()
    media_type = _CONTENT.get(path, _JSON)
    done = {"type": "object"} if media_type == _JSON else {}
    if (method, path) in ANSWERS:
        done = schemas.ref(ANSWERS[(method, path)])
    media_types = [media_type, "text/javascript"] if path == STATIC else [media_type]
    return status, {"description": "Done.", "content": {media: {"schema": done} for media in media_types}}


def _redirected() -> dict[str, Any]:
    location = {"Location": {"description": "Where to go next.", "schema": {"type": "string"}}}
    return {"description": "Redirected.", "headers": location}


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
    """Who may call: the API takes a bearer; the console a session cookie, a bearer or Basic (and
    is open without a token configured, on loopback only); receivers check signatures instead, and
    probes, scrapers, the sign-in form and the static files take nothing."""
    if path.startswith("/api/"):
        return [{"bearer": []}]
    if path in PAGES:
        return [{"session": []}, {"bearer": []}, {"basic": []}, {}]
    if path == INSTALL:  # never open: it binds Foundry to a workspace
        return [{"bearer": []}, {"basic": []}]
    return []


def _version() -> str:
    try:
        return metadata.version("foundry")
    except metadata.PackageNotFoundError:
        return "0"
