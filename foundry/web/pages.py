"""`GET /` and `GET /runs/{id}`: read-only pages of runs, their timelines and recent deliveries.

Server-rendered, no script. Behind `FOUNDRY_API_TOKEN` when it is set — as a bearer, or as the
password of HTTP Basic so that a browser can sign in — and open when it is not (a laptop).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from foundry.web import context, errors
from foundry.web import markup as m

PAGE_SIZE = 50
HEADERS = {
    # Nothing here runs script, loads anything or may be framed; the inline style is all there is.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="foundry"'}


async def home(request: Request) -> Response:
    if not signed_in(request):
        return _sign_in()
    foundry = context.container(request)
    found = await foundry.runs.list({"limit": str(PAGE_SIZE)})
    received = await foundry.deliveries.list({"limit": str(PAGE_SIZE)})
    page = m.document(
        "Foundry",
        m.tag("h2", "Runs"),
        m.table(
            ["Issue", "Title", "Status", "Trigger", "Attempt", "PR", "Created (UTC)"],
            [_run_row(run) for run in found["runs"]],
            empty="No runs yet.",
        ),
        m.tag("h2", "Recent deliveries"),
        _deliveries(received["deliveries"]),
    )
    return HTMLResponse(page, headers=HEADERS)


async def run(request: Request) -> Response:
    if not signed_in(request):
        return _sign_in()
    story = await context.container(request).runs.show(request.path_params["run_id"])
    found = story["run"]
    page = m.document(
        f"{found['linear_identifier']} · Foundry",
        m.tag("h2", m.join([found["linear_identifier"], " ", found["title"]])),
        m.definitions(_run_facts(found)),
        m.tag("h2", "Timeline"),
        m.table(
            ["#", "Time (UTC)", "Kind", "Actor", "Data"],
            [
                [e["seq"], m.when(e["created_at"]), e["kind"], e["actor"] or "", m.data(e["data"])]
                for e in story["timeline"]
            ],
            empty="No events.",
        ),
        m.tag("h2", "Deliveries"),
        _deliveries(story["deliveries"]),
    )
    return HTMLResponse(page, headers=HEADERS)


def signed_in(request: Request) -> bool:
    """Open without a token; with one, a matching bearer or Basic password (any user name)."""
    token = context.container(request).settings.api_token
    if token is None:
        return True
    given = _credential(request.headers.get("authorization", ""))
    return given is not None and hmac.compare_digest(given, token.get_secret_value().encode())


def _credential(header: str) -> bytes | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode()
    if scheme.lower() != "basic":
        return None
    try:
        user_pass = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    _, colon, password = user_pass.partition(b":")
    return password if colon else None


def _sign_in() -> Response:
    return errors.error_response(
        401, "Sign in with the operator token (FOUNDRY_API_TOKEN) as the password.", CHALLENGE
    )


def _run_row(run: dict[str, Any]) -> list[Any]:
    return [
        m.link(_run_href(run["id"]), run["linear_identifier"]),
        m.link(_run_href(run["id"]), run["title"]),
        m.status(run["status"]),
        run["trigger"],
        run["attempt"],
        _pull_request(run),
        m.when(run["created_at"]),
    ]


def _run_href(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def _run_facts(run: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Run", run["id"]),
        ("Status", m.status(run["status"])),
        ("Trigger", run["trigger"]),
        ("Repository", _repository(run)),
        ("Attempt", run["attempt"]),
        ("Agent", run["agent_name"] or "—"),
        ("Pull request", _pull_request(run) or "—"),
        ("Cost", f"${run['cost_usd']:.2f}"),
        ("Created", m.when(run["created_at"]) + " UTC"),
        ("Updated", m.when(run["updated_at"]) + " UTC"),
    ]


def _repository(run: dict[str, Any]) -> str:
    if run.get("repository"):
        return str(run["repository"])
    return "waiting for /foundry repo owner/name" if run.get("awaiting") == "repository" else "—"


def _pull_request(run: dict[str, Any]) -> m.Safe:
    if run["pr_number"] is None and not run["pr_url"]:
        return m.escape("")
    return m.external_link(run["pr_url"], f"#{run['pr_number']}" if run["pr_number"] else run["pr_url"])


def _deliveries(rows: list[dict[str, Any]]) -> m.Safe:
    return m.table(
        ["Received (UTC)", "Source", "Event", "Verdict", "Run", "Key"],
        [
            [
                m.when(d["received_at"]),
                d["source"],
                d["event"],
                m.status(d["verdict"]),
                m.link(_run_href(d["run_id"]), d["run_id"][:8]) if d["run_id"] else "",
                d["delivery_key"],
            ]
            for d in rows
        ],
        empty="No deliveries yet.",
    )
