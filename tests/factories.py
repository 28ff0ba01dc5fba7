"""Signed deliveries built from the provider fixtures, with overrides."""

from __future__ import annotations

import copy
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from foundry.inbound import signatures

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def linear_body(
    name: str, *, issue_id: str | None = None, identifier: str | None = None, timestamp_ms: int | None = None
) -> dict[str, Any]:
    """A Linear fixture, fresh-stamped, optionally moved to another issue."""
    body = copy.deepcopy(_fixture(name))
    body["webhookTimestamp"] = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    if issue_id is not None:
        _move_issue(body, issue_id, identifier or f"ENG-{abs(hash(issue_id)) % 10000}")
    return body


def _move_issue(body: dict[str, Any], issue_id: str, identifier: str) -> None:
    if body["type"] == "Issue":
        body["data"]["id"], body["data"]["identifier"] = issue_id, identifier
        return
    holder = body["data"] if body["type"] == "Comment" else body["agentSession"]
    holder["issueId"] = issue_id
    holder["issue"]["id"], holder["issue"]["identifier"] = issue_id, identifier


def linear_request(
    body: dict[str, Any] | bytes, *, secret: str, delivery: str | None = None, event: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Raw bytes and the headers Linear sends with them."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event_type = event or (json.loads(raw).get("type", "Issue") if raw.startswith(b"{") else "Issue")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Linear-Delivery": delivery or str(uuid.uuid4()),
        "Linear-Event": event_type,
        "Linear-Signature": signatures.hex_hmac(secret, raw),
    }
    return raw, headers


def post_linear(
    client: Any,
    name: str,
    *,
    secret: str = "linear-test-secret",
    delivery: str | None = None,
    **body_overrides: Any,
) -> Any:
    """Sign and post a Linear fixture through an httpx-style client; returns the response."""
    raw, headers = linear_request(linear_body(name, **body_overrides), secret=secret, delivery=delivery)
    return client.post("/webhooks/linear", content=raw, headers=headers)


def slack_body(name: str, *, run_id: str, **action_overrides: Any) -> dict[str, Any]:
    """A Slack interaction fixture whose button is valued `run_id`, with action overrides."""
    body = copy.deepcopy(_fixture(name))
    body["actions"][0].update({"value": run_id, **action_overrides})
    return body


def slack_request(
    payload: dict[str, Any] | bytes, *, secret: str, timestamp: str | int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Raw form-encoded `payload=<json>` (or raw bytes as given) and the headers Slack signs it with."""
    raw = payload if isinstance(payload, bytes) else urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + signatures.hex_hmac(secret, b"v0:" + stamp.encode() + b":" + raw),
    }
    return raw, headers


GITHUB_SECRET = "github-test-secret"


def github_request(
    name: str,
    *,
    run_id: str = "",
    secret: str = GITHUB_SECRET,
    delivery: str | None = None,
    event: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A GitHub fixture aimed at `run_id` (its branch and `Foundry-Run:` marker), signed."""
    text = (FIXTURES / f"{name}.json").read_text()
    if run_id:
        text = text.replace("RUNSHORT", run_id.replace("-", "")[:8]).replace("RUN_ID", run_id)
    raw = json.dumps(json.loads(text)).encode()
    kind = event or _github_event(name)
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": kind,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "498765432",
        "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(secret, raw),
    }
    return raw, headers


def _github_event(fixture: str) -> str:
    """The `X-GitHub-Event` GitHub sends with the body of `fixture`."""
    for prefix, kind in (("github_issues_", "issues"), ("github_issue_comment_", "issue_comment")):
        if fixture.startswith(prefix):
            return kind
    return {
        "github_ping": "ping",
        "github_check_suite_failed": "check_suite",
        "github_pull_request_review_changes_requested": "pull_request_review",
    }.get(fixture, "pull_request")


def github_event_request(name: str, **kw: Any) -> tuple[bytes, dict[str, str]]:
    """`github_request` for a new event of the fixture's shape, not a copy of an earlier one.

    Two real events never share their bytes (ids, times and shas differ), and the same bytes
    under a new GUID are a replay, answered `duplicate`. A fresh top-level `zen` (which GitHub
    sends with every ping, and the parsers ignore) stands for that difference.
    """
    raw, headers = github_request(name, **kw)
    body = {**json.loads(raw), "zen": f"event {uuid.uuid4()}"}
    raw = json.dumps(body).encode()
    secret = kw.get("secret", GITHUB_SECRET)
    headers["X-Hub-Signature-256"] = "sha256=" + signatures.hex_hmac(secret, raw)
    return raw, headers


def github_resigned(raw: bytes, headers: dict[str, str], *, secret: str = GITHUB_SECRET) -> dict[str, str]:
    """`headers` from `github_request` for a body changed since: signed anew, a fresh GUID."""
    return {
        **headers,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(secret, raw),
    }


def github_issue_body(
    name: str, *, number: int = 42, node_id: str | None = None, sender: str | None = None
) -> dict[str, Any]:
    """A GitHub `issues` / `issue_comment` fixture moved to issue `number` of its repository (with
    its own node id), as a new event: a fresh top-level `zen` keeps two events' bytes apart."""
    body = copy.deepcopy(_fixture(name))
    issue, repository = body["issue"], body["repository"]["full_name"]
    issue["number"] = number
    issue["node_id"] = node_id or f"I_kwDOconf{number:08d}"
    issue["html_url"] = f"https://github.com/{repository}/issues/{number}"
    if sender is not None:
        body["sender"] = {**body["sender"], "login": sender, "id": 7_000_000 + len(sender)}
    body["zen"] = f"event {uuid.uuid4()}"
    return body


def github_issue_request(
    name: str, body: dict[str, Any] | None = None, *, secret: str = GITHUB_SECRET
) -> tuple[bytes, dict[str, str]]:
    """`body` (by default the fixture as is) signed as GitHub sends it, under a new GUID."""
    raw = json.dumps(body if body is not None else _fixture(name)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": _github_event(name),
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "498765432",
        "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(secret, raw),
    }
    return raw, headers
