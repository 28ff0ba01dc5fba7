"""The console's test kit: runs seeded at any status, a planned run, signing in, CSRF tokens."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database, runs
from foundry.services import planning
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import linear_body, linear_request

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SECRET_KEY = "console-test-secret-key"
HOSTILE = '<script>alert("owned")</script> & "quotes"'
ESCAPED = "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def seed(
    db: database.Database,
    *,
    status: str = "intake",
    identifier: str = "ENG-1",
    title: str = "A run",
    created_at: datetime = T0,
    issue_url: str | None = None,
) -> str:
    run = runs.NewRun(
        str(uuid.uuid4()),
        f"issue-{uuid.uuid4().hex[:8]}",
        identifier,
        title,
        status,
        "label",
        created_at,
        "## Acceptance criteria\n- It works\n",
        issue_url or f"https://linear.app/acme/issue/{identifier}",
    )
    opened = runs.NewEvent("opened", created_at, "dana@example.com")
    assert db.transaction_sync(lambda tx: runs.insert_unless_active(tx, run, opened, since=T0, max_recent=99))
    return run.id


def planned(client: TestClient, container: wiring.Container, title: str | None = None) -> str:
    """A run opened by a signed Linear delivery and planned: it awaits approval, with effects."""
    body = linear_body("linear_issue_create_labeled", issue_id=str(uuid.uuid4()), identifier="ENG-42")
    body["data"]["title"] = title or body["data"]["title"]
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    run_id: str = client.post("/webhooks/linear", content=raw, headers=headers).json()["run_id"]
    planner = planning.Planning(
        container.db,
        rules=container.settings.policy_rules(),
        model=None,
        slack_channel="C0APPROVAL",
        owner="planner",
        lease=timedelta(seconds=60),
        clock=lambda: datetime.now(UTC),
    )
    assert planner.plan_once() == 1
    return run_id


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def status_of(db: database.Database, run_id: str) -> str:
    row = db.transaction_sync(lambda tx: runs.get(tx, run_id))
    assert row is not None
    return str(row["status"])


def sign_in(client: TestClient, name: str = "Lee Marsh", next_path: str = "/") -> Any:
    form = {"token": API_TOKEN, "name": name, "next": next_path}
    return client.post("/sign-in", data=form, follow_redirects=False)
