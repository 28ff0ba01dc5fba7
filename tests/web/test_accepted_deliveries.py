"""Every accepted delivery is answered `200`, on all three receivers, whatever its outcome.

Linear counts any other status as a failed delivery (and retries it); Slack shows the clicker an
error. The body still says what happened. And GitHub's delivery GUID is not signed: the same
signed bytes under a new GUID are a replay, answered `duplicate`, with no second effect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database
from foundry.web.app import create_app
from tests import agentkit
from tests.factories import GITHUB_SECRET, github_request, post_linear, slack_body, slack_request

SLACK_SECRET = "slack-test-secret"
GITHUB_ROWS = (
    "SELECT (SELECT count(*) FROM run_events) + (SELECT count(*) FROM webhook_deliveries)"
    " + (SELECT count(*) FROM outbox)"
)


@pytest.fixture
def client(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with all three receivers configured."""
    settings = make_settings(slack_signing_secret=SLACK_SECRET, github_webhook_secret=GITHUB_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as test:
        yield test


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def outcome(response: httpx.Response) -> str:
    body = accepted(response)
    return "ignored" if "ignored" in body else str(body["outcome"])


def test_linear_answers_200_for_every_outcome(client: TestClient) -> None:
    answers = [
        outcome(post_linear(client, "linear_issue_create_labeled", delivery="d-open")),
        outcome(post_linear(client, "linear_comment_start")),
        outcome(post_linear(client, "linear_comment_approve")),
        outcome(post_linear(client, "linear_agent_session_prompted")),
        outcome(post_linear(client, "linear_issue_create_labeled", delivery="d-open")),
        outcome(post_linear(client, "linear_issue_update_title_only")),
        outcome(post_linear(client, "linear_issue_remove")),
    ]
    assert answers == ["opened", "attached", "decided", "updated", "duplicate", "ignored", "cancelled"]


def test_slack_answers_200_for_every_outcome(client: TestClient) -> None:
    run_id = accepted(post_linear(client, "linear_issue_create_labeled"))["run_id"]

    def click(target: str, action_ts: str) -> httpx.Response:
        body = slack_body("slack_block_actions_approve", run_id=target, action_ts=action_ts)
        raw, headers = slack_request(body, secret=SLACK_SECRET)
        return client.post("/webhooks/slack", content=raw, headers=headers)

    answers = [
        outcome(click(run_id, "1795689000.000100")),
        outcome(click(run_id, "1795689000.000100")),  # Slack's copy of the same click
        outcome(click("00000000-0000-4000-8000-000000000000", "1795689000.000200")),  # no such run
    ]
    assert answers == ["decided", "duplicate", "ignored"]


def test_github_answers_200_for_every_outcome(client: TestClient, db: database.Database) -> None:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")

    def post(name: str, delivery: str) -> httpx.Response:
        raw, headers = github_request(name, run_id=run_id, delivery=delivery)
        return client.post("/webhooks/github", content=raw, headers=headers)

    answers = [
        outcome(post("github_pull_request_opened", "guid-1")),
        outcome(post("github_pull_request_opened", "guid-1")),  # GitHub's redelivery: the same GUID
        outcome(post("github_ping", "guid-2")),
    ]
    assert answers == ["updated", "duplicate", "ignored"]


@pytest.mark.parametrize(
    "name", ["github_pull_request_opened", "github_check_suite_failed", "github_pull_request_closed_merged"]
)
def test_github_bytes_replayed_under_a_new_delivery_guid_are_a_duplicate_with_no_second_effect(
    client: TestClient, db: database.Database, sql: Callable[[str], Any], name: str
) -> None:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    if name != "github_pull_request_opened":
        raw, headers = github_request("github_pull_request_opened", run_id=run_id)
        accepted(client.post("/webhooks/github", content=raw, headers=headers))
    raw, headers = github_request(name, run_id=run_id, delivery="guid-original")
    first = accepted(client.post("/webhooks/github", content=raw, headers=headers))
    before = (sql(GITHUB_ROWS), sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'"))
    for guid, hook in (("guid-forged", "498765432"), ("guid-other-hook", "111")):
        replayed = {**headers, "X-GitHub-Delivery": guid, "X-GitHub-Hook-ID": hook}
        answer = accepted(client.post("/webhooks/github", content=raw, headers=replayed))
        assert answer == {"outcome": "duplicate", "run_id": first["run_id"]}
    assert (sql(GITHUB_ROWS), sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'")) == before
