"""`foundry demo`: the whole story offline, in one process, on a throwaway SQLite database.

Signed sample deliveries go in through the real receivers (Linear, Slack, GitHub); the worker
loops run in between; a simulated agent takes the job and reports its pull request; simulated
GitHub fails CI once, sees the fix pushed, and merges. Then the run's timeline is printed.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

with warnings.catch_warnings():  # the test client's transport is all the demo needs of it
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from foundry import logs, wiring
from foundry import settings as settings_module
from foundry.domain import names
from foundry.domain.agents import AgentSpec
from foundry.inbound import signatures
from foundry.services import schema
from foundry.web.app import create_app

SECRETS = {"linear": "demo-linear", "github": "demo-github", "slack": "demo-slack", "api": "demo-api"}
ISSUE = {
    "id": "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42",
    "identifier": "ENG-42",
    "title": "Persist saved filters across sessions",
    "description": "Customers lose their saved filters.\n\n## Acceptance criteria\n"
    "- Saved filters persist across sessions\n- Existing filters are migrated\n",
    "url": "https://linear.app/acme/issue/ENG-42",
    "labelIds": ["label-foundry"],
    "labels": [{"id": "label-foundry", "name": "foundry"}],
    "state": {"type": "unstarted"},
}
LEAD = {"id": "user-lead", "name": "Lee Marsh", "email": "lead@example.com"}


def run(say: Callable[[str], None] = print) -> int:
    logs.configure("console", "error")  # the story is the output; write-back is off on purpose
    with tempfile.TemporaryDirectory(prefix="foundry-demo-") as workdir:
        settings = _settings(Path(workdir))
        schema.upgrade(settings.database_url)
        container = wiring.build(settings)
        loops = wiring.worker_loops(settings, container.db, "demo-worker")
        with TestClient(create_app(container)) as web:
            run_id = _story(web, container, loops, say)
        story = container.runs.show_sync(run_id)
        container.db.engine.dispose()
    say("")
    say(f"Timeline of run {run_id[:8]} ({story['run']['issue_key']}, now {story['run']['status']}):")
    for event in story["timeline"]:
        detail = ", ".join(f"{k}={v}" for k, v in event["data"].items() if k not in ("from",))
        say(f"  {event['seq']:>2}. {event['kind']:<20} {event['actor'] or '':<18} {detail[:70]}")
    return 0 if story["run"]["status"] == "merged" else 1


def _settings(workdir: Path) -> settings_module.Settings:
    approver = {
        "name": "Lee Marsh",
        "slack_user_id": "U0LEAD0001",
        "linear_email": LEAD["email"],
        "roles": ["lead"],
    }
    return settings_module.load(
        environ={},
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        linear_webhook_secret=SECRETS["linear"],
        github_webhook_secret=SECRETS["github"],
        slack_signing_secret=SECRETS["slack"],
        api_token=SECRETS["api"],
        approvals={"approvers": [approver]},
        log_level="warning",
    )


def _story(
    web: TestClient, container: wiring.Container, loops: list[Callable[[], int]], say: Callable[[str], None]
) -> str:
    def work() -> None:  # the worker, one pass at a time until idle
        for _ in range(20):
            if sum(loop() for loop in loops) == 0:
                return

    container.agents.add_sync(AgentSpec("demo-agent", "manual", None, {}, ("team-a",)))
    token = container.agents.issue_token_sync("demo-agent")["token"]
    run_id: str = _linear(web, "Issue", "create", ISSUE)["run_id"]
    say(f"Linear: ENG-42 labelled `foundry`          -> run {run_id[:8]} opened")
    work()
    say(f"Worker: planned                          -> {_status(container, run_id)}")
    _slack_approve(web, run_id)
    say(f"Slack:  Lee clicks Approve               -> {_status(container, run_id)}")
    work()
    say(f"Worker: dispatched to demo-agent         -> {_status(container, run_id)}")
    branch = names.branch_name("ENG-42", run_id)
    _agent(web, run_id, token, {"kind": "started"})
    _github(web, "pull_request", _pr(run_id, branch, "opened", "1" * 40))
    _agent(
        web,
        run_id,
        token,
        {"kind": "pr_opened", "pr_number": 318, "pr_url": "https://github.com/acme/web/pull/318"},
    )
    say(f"GitHub: PR #318 opened on {branch:<14} -> {_status(container, run_id)}")
    _github(web, "check_suite", _failed_suite(run_id, branch, "1" * 40))
    say(f"GitHub: CI failed                        -> {_status(container, run_id)} (attempt 2)")
    work()
    _github(web, "pull_request", _pr(run_id, branch, "synchronize", "2" * 40))
    say(f"Agent:  pushed the fix                   -> {_status(container, run_id)}")
    _github(
        web,
        "pull_request",
        {
            **_pr(run_id, branch, "closed", "2" * 40),
            "pull_request": {**_pr(run_id, branch, "closed", "2" * 40)["pull_request"], "merged": True},
        },
    )
    work()
    say(f"GitHub: PR #318 merged                   -> {_status(container, run_id)}")
    return run_id


def _status(container: wiring.Container, run_id: str) -> str:
    return str(container.runs.show_sync(run_id)["run"]["status"])


def _linear(web: TestClient, kind: str, action: str, data: dict[str, Any]) -> Any:
    body = json.dumps(
        {
            "type": kind,
            "action": action,
            "actor": LEAD,
            "data": data,
            "webhookTimestamp": int(time.time() * 1000),
        }
    ).encode()
    headers = {
        "Linear-Delivery": str(uuid.uuid4()),
        "Linear-Signature": signatures.hex_hmac(SECRETS["linear"], body),
        "Content-Type": "application/json",
    }
    return web.post("/webhooks/linear", content=body, headers=headers).json()


def _slack_approve(web: TestClient, run_id: str) -> Any:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0LEAD0001", "username": "lee"},
        "actions": [{"action_id": "foundry_approve", "value": run_id, "action_ts": str(time.time())}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + signatures.hex_hmac(SECRETS["slack"], b"v0:" + stamp.encode() + b":" + body)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return web.post("/webhooks/slack", content=body, headers=headers).json()


def _agent(web: TestClient, run_id: str, token: str, body: dict[str, Any]) -> Any:
    return web.post(
        f"/api/runs/{run_id}/events", json=body, headers={"Authorization": f"Bearer {token}"}
    ).json()


def _github(web: TestClient, event: str, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(SECRETS["github"], body),
    }
    return web.post("/webhooks/github", content=body, headers=headers).json()


def _pr(run_id: str, branch: str, action: str, sha: str) -> dict[str, Any]:
    pr = {
        "number": 318,
        "html_url": "https://github.com/acme/web/pull/318",
        "title": "ENG-42: Persist filters",
        "body": f"Foundry-Run: {run_id}\n",
        "head": {"ref": branch, "sha": sha},
        "merged": False,
    }
    return {"action": action, "number": 318, "pull_request": pr, "repository": {"full_name": "acme/web"}}


def _failed_suite(run_id: str, branch: str, sha: str) -> dict[str, Any]:
    suite = {
        "conclusion": "failure",
        "app": {"name": "GitHub Actions"},
        "pull_requests": [{"number": 318, "head": {"ref": branch, "sha": sha}}],
    }
    return {"action": "completed", "check_suite": suite, "repository": {"full_name": "acme/web"}}
