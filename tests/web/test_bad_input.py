"""Input no column can hold — a NUL, a lone surrogate, a number past 32 bits — is a 400 with a JSON
sentence on every route, and writes nothing. One row per case the fuzzers found as a 500."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database, runs
from foundry.web.app import create_app
from tests import agentkit
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import (
    GITHUB_SECRET,
    github_request,
    github_resigned,
    linear_body,
    linear_request,
    slack_body,
    slack_request,
)

SLACK_SECRET = "slack-test-secret"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ROWS = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries) + (SELECT count(*) FROM outbox)"
    " + (SELECT count(*) FROM agents) + (SELECT count(*) FROM agent_tokens)"
    " + (SELECT count(*) FROM idempotency_keys)"
)
NUL, SURROGATE = "a\x00b", "a\ud800b"


@dataclass(frozen=True)
class World:
    """What the cases aim at: a run awaiting approval, and a run an agent is working on."""

    awaiting: str
    running: str
    agent_token: str


Request = tuple[str, str, bytes, dict[str, str]]  # method, URL, body, headers
Case = Callable[[World], Request]


def _linear(mutate: Callable[[dict[str, Any]], Any], name: str = "linear_issue_create_labeled") -> Case:
    def build(world: World) -> Request:
        body = linear_body(name, issue_id=f"issue-{uuid.uuid4().hex[:8]}")
        mutate(body)
        raw, headers = linear_request(_dumps(body), secret=LINEAR_SECRET, event=body.get("type", "Issue"))
        return "POST", "/webhooks/linear", raw, headers

    return build


def _slack(mutate: Callable[[dict[str, Any]], Any]) -> Case:
    def build(world: World) -> Request:
        body = slack_body("slack_block_actions_approve", run_id=world.awaiting)
        mutate(body)
        raw, headers = slack_request(
            urlencode({"payload": _dumps(body).decode()}).encode(), secret=SLACK_SECRET
        )
        return "POST", "/webhooks/slack", raw, headers

    return build


def _github(mutate: Callable[[dict[str, Any]], Any], name: str = "github_pull_request_opened") -> Case:
    def build(world: World) -> Request:
        raw, headers = github_request(name, run_id=world.running)
        body = json.loads(raw)
        mutate(body)
        raw = _dumps(body)
        return "POST", "/webhooks/github", raw, github_resigned(raw, headers)

    return build


def _api(method: str, url: Callable[[World], str], body: Any = None, *, agent: bool = False) -> Case:
    def build(world: World) -> Request:
        token = world.agent_token if agent else API_TOKEN
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        raw = b"" if body is None else _dumps(body)
        return method, url(world), raw, headers

    return build


def _dumps(body: Any) -> bytes:
    """JSON as senders write it: a lone surrogate as the escape `\\ud800`; `BIG`/`DEEP` as raw."""
    text = json.dumps(body)
    return text.replace('"<BIG>"', "1" + "0" * 400).replace('"<DEEP>"', "[" * 5000 + "]" * 5000).encode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set `a.b.0.c` in a body to `value`."""

    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        holder: Any = body
        for part in parents:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        holder[int(last) if isinstance(holder, list) else last] = value

    return mutate


def _events(body: dict[str, Any]) -> Case:
    return _api("POST", lambda w: f"/api/runs/{w.running}/events", body, agent=True)


def _approve(body: dict[str, Any]) -> Case:
    return _api("POST", lambda w: f"/api/runs/{w.awaiting}/approve", body)


PR_OPENED = {"kind": "pr_opened", "pr_url": "https://github.com/acme/web/pull/1"}
CASES: dict[str, Case] = {
    "linear title NUL": _linear(_set("data.title", NUL)),
    "linear title surrogate": _linear(_set("data.title", SURROGATE)),
    "linear action NUL": _linear(_set("action", "create\x00")),
    "linear data.id NUL": _linear(_set("data.id", NUL)),
    "linear actor email NUL": _linear(_set("actor.email", "dana\x00@example.com")),
    "linear actor name surrogate": _linear(_set("actor.name", SURROGATE)),
    "linear label name NUL": _linear(_set("data.labels.0.name", NUL)),
    "linear label id NUL": _linear(_set("data.labelIds.0", NUL)),
    "linear key NUL": _linear(_set("data.ti\x00tle", "x")),
    "linear key surrogate": _linear(_set("\udc00", 1)),
    "linear comment body NUL": _linear(_set("data.body", "/foundry start\x00"), "linear_comment_start"),
    "linear webhookTimestamp 10^400": _linear(_set("webhookTimestamp", "<BIG>")),
    "linear webhookTimestamp negative": _linear(_set("webhookTimestamp", -1)),
    "linear nested 5000 deep": _linear(_set("data.extra", "<DEEP>")),
    "slack type NUL": _slack(_set("type", "block_actions\x00")),
    "slack user id NUL": _slack(_set("user.id", "U0LEAD\x000001")),
    "slack user name surrogate": _slack(_set("user.username", SURROGATE)),
    "slack action_id NUL": _slack(_set("actions.0.action_id", "foundry_approve\x00")),
    "slack action value NUL": _slack(_set("actions.0.value", NUL)),
    "slack action_ts surrogate": _slack(_set("actions.0.action_ts", SURROGATE)),
    "github review state NUL": _github(
        _set("review.state", "changes_requested\x00"), "github_pull_request_review_changes_requested"
    ),
    "github head sha NUL": _github(_set("pull_request.head.sha", NUL)),
    "github html_url NUL": _github(_set("pull_request.html_url", NUL)),
    "github repository NUL": _github(_set("repository.full_name", "acme/web\x00")),
    "github number 2^31": _github(_set("pull_request.number", 2**31)),
    "github number 10^400": _github(_set("pull_request.number", "<BIG>")),
    "github number negative": _github(_set("pull_request.number", -318)),
    "github number zero": _github(_set("pull_request.number", 0)),
    "GET /api/runs/%00": _api("GET", lambda w: "/api/runs/%00"),
    "GET /api/runs?issue=%00": _api("GET", lambda w: "/api/runs?issue=%00"),
    "GET /api/runs?status=%00": _api("GET", lambda w: "/api/runs?status=%00"),
    "GET /runs/%00 (page)": _api("GET", lambda w: "/runs/%00"),
    "POST /api/agents/%00/tokens": _api("POST", lambda w: "/api/agents/a%00b/tokens"),
    "DELETE /api/agents/%00/tokens": _api("DELETE", lambda w: "/api/agents/a%00b/tokens"),
    "a token issue's body nested 5000 deep": _api("POST", lambda w: "/api/agents/coder/tokens", "<DEEP>"),
    "agent name NUL": _api("POST", lambda w: "/api/agents", {"name": "a\x00b", "provider": "manual"}),
    "agent endpoint NUL": _api(
        "POST", lambda w: "/api/agents", {"name": "x", "provider": "webhook", "endpoint": "http://a\x00b"}
    ),
    "agent config key NUL": _api(
        "POST", lambda w: "/api/agents", {"name": "x", "provider": "manual", "config": {"k\x00": 1}}
    ),
    "agent config value surrogate": _api(
        "POST", lambda w: "/api/agents", {"name": "x", "provider": "manual", "config": {"k": SURROGATE}}
    ),
    "agent config 10^400 as a float": _api(
        "POST", lambda w: "/api/agents", {"name": "x", "provider": "manual", "config": {"k": 1e400}}
    ),
    "approve actor NUL": _approve({"actor": "lee\x00"}),
    "approve actor surrogate": _approve({"actor": SURROGATE}),
    "approve actor 256 characters": _approve({"actor": "x" * 256}),
    "agent pr_number 2^31": _events({**PR_OPENED, "pr_number": 2**31}),
    "agent pr_number 10^400": _events({**PR_OPENED, "pr_number": "<BIG>"}),
    "agent pr_number negative": _events({**PR_OPENED, "pr_number": -1}),
    "agent message NUL": _events({"kind": "progress", "message": NUL}),
    "agent pr_url surrogate": _events({**PR_OPENED, "pr_number": 7, "pr_url": SURROGATE}),
}


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    db = database.Database(db_url)
    token = agentkit.register(db)
    yield World(awaiting_run(db), agentkit.running_run(db, "coder"), token)
    db.engine.dispose()


@pytest.fixture
def app_client(make_settings: Callable[..., Any], world: World) -> Iterator[TestClient]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET, slack_signing_secret=SLACK_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


def awaiting_run(db: database.Database) -> str:
    now = datetime.now(UTC)
    run = runs.NewRun(
        str(uuid.uuid4()), "issue-awaiting", "ENG-7", "Awaiting", "awaiting_approval", "label", now
    )
    opened = runs.NewEvent("opened", now, "dana@example.com")
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=now, max_recent=99)
    )
    return run.id


@pytest.mark.parametrize("name", list(CASES))
def test_unstorable_input_is_a_400_that_writes_nothing(
    app_client: TestClient, world: World, sql: Callable[[str], Any], name: str
) -> None:
    method, url, raw, headers = CASES[name](world)
    before = sql(ROWS)
    response = app_client.request(method, url, content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"].endswith(".")
    assert sql(ROWS) == before


@pytest.mark.parametrize(
    ("header", "value"),
    [("Idempotency-Key", "key\x00"), ("Linear-Delivery", "delivery\x00")],
)
def test_a_nul_in_a_header_we_store_is_a_400(
    app_client: TestClient, world: World, sql: Callable[[str], Any], header: str, value: str
) -> None:
    raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    before = sql(ROWS)
    url = "/webhooks/linear" if header == "Linear-Delivery" else f"/api/runs/{world.awaiting}/approve"
    response = app_client.post(url, content=raw, headers={**headers, **AUTH, header: value})
    assert response.status_code == 400
    assert "NUL" in response.json()["error"]
    assert sql(ROWS) == before


def test_the_same_fields_within_bounds_are_accepted(app_client: TestClient, world: World) -> None:
    """The bounds are the columns', not tighter: the largest PR number a column holds is taken."""
    method, url, raw, headers = _events({**PR_OPENED, "pr_number": 2**31 - 1})(world)
    answered = app_client.request(method, url, content=raw, headers=headers)
    assert answered.status_code == 202, answered.text
    raw, headers = linear_request(
        linear_body("linear_issue_create_labeled", timestamp_ms=int(time.time() * 1000)), secret=LINEAR_SECRET
    )
    assert app_client.post("/webhooks/linear", content=raw, headers=headers).status_code < 300
