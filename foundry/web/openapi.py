"""`GET /openapi.json`: an OpenAPI 3.1 document of every route the app serves, read from the app.

Paths and methods come from the app's own routes, so the document cannot miss one; what each
operation does is the hand-written summary below (a route without one says so, and a test fails).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

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
}
MISSING_SUMMARY = "(no summary written yet)"
PAGES = {"/", "/runs/{run_id}"}
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "FOUNDRY_API_TOKEN for /api/* and the pages; an agent's own token for run events.",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "The pages from a browser: any user name, FOUNDRY_API_TOKEN as the password.",
    },
}
ERROR = {
    "description": 'An error: {"error": "<one readable sentence>"}.',
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]+)?}")


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
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
        },
    }


def operation(method: str, path: str) -> dict[str, Any]:
    described: dict[str, Any] = {
        "summary": SUMMARIES.get((method, path), MISSING_SUMMARY),
        "security": security(path),
        "responses": {"2XX": {"description": "Done."}, "4XX": ERROR, "5XX": ERROR},
    }
    names = _PARAMETER.findall(path)
    if names:
        described["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
        ]
    return described


def security(path: str) -> list[dict[str, list[str]]]:
    """Who may call: the API takes a bearer; the pages a bearer or Basic (and are open without a
    token configured); receivers check signatures instead, and probes and scrapers carry nothing."""
    if path.startswith("/api/"):
        return [{"bearer": []}]
    if path in PAGES:
        return [{"bearer": []}, {"basic": []}, {}]
    return []


def _version() -> str:
    try:
        return metadata.version("foundry")
    except metadata.PackageNotFoundError:
        return "0"
