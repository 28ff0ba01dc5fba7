"""`GET /api/runs/{id}`: one view of a run at every stage — plan, effects, timeline in sentences,
links — by id or short id, as declared in /openapi.json, and never a configured secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema_rs
import pytest
import respx
from starlette.testclient import TestClient

from foundry import logs, wiring
from foundry.clients.agents import WebhookAgentClient
from foundry.db import outbox, runs
from foundry.domain import policy, routing
from foundry.domain.agents import AgentSpec
from foundry.services import planning
from foundry.services import runs as run_reads
from foundry.services.dispatch import Dispatch
from foundry.services.jobs import Jobs
from foundry.services.sender import Sender
from foundry.settings import Settings
from foundry.web.app import create_app
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import (
    GITHUB_SECRET,
    github_request,
    linear_body,
    linear_request,
    slack_body,
    slack_request,
)

API = {"Authorization": f"Bearer {API_TOKEN}"}
SLACK_SECRET = "slack-signing-secret-of-the-view-test"
ISSUE_URL = "https://linear.app/acme/issue/ENG-42/persist-saved-filters-across-sessions"
# `src/auth/…` is a sensitive area that needs the lead; ENG's issues work in acme/web.
DESCRIPTION = (
    "Saved filters vanish in `src/auth/session.py`.\n\n## Acceptance criteria\n- Saved filters persist\n"
)
RULES = policy.Policy(sensitive={"auth": policy.SensitiveArea(("src/auth/**",), "lead")})
ROUTES = routing.Repositories((routing.Repository("acme/web", teams=routing.folded(["ENG"])),))
AGENT_ENDPOINT = "https://agent.test/jobs"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Story:
    """One run driven through the real receivers, services and worker steps, a stage at a time."""

    client: TestClient
    container: wiring.Container
    run_id: str = ""
    token: str = ""

    def view(self, run_id: str | None = None) -> dict[str, Any]:
        response = self.client.get(f"/api/runs/{run_id or self.run_id}", headers=API)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def open(self, title: str | None = None, description: str = DESCRIPTION) -> Story:
        body = linear_body("linear_issue_create_labeled")
        body["data"]["description"] = description
        body["data"]["title"] = title or body["data"]["title"]
        raw, headers = linear_request(body, secret=LINEAR_SECRET)
        self.run_id = self.client.post("/webhooks/linear", content=raw, headers=headers).json()["run_id"]
        return self

    def plan(self) -> Story:
        planner = planning.Planning(
            self.container.db,
            rules=RULES,
            model=None,
            slack_channel="C0APPROVAL",
            owner="planner",
            lease=timedelta(seconds=60),
            clock=utcnow,
            repositories=ROUTES,
        )
        assert planner.plan_once() == 1
        return self

    def approve_in_slack(self, name: str = "slack_block_actions_approve") -> Story:
        raw, headers = slack_request(slack_body(name, run_id=self.run_id), secret=SLACK_SECRET)
        assert self.client.post("/webhooks/slack", content=raw, headers=headers).status_code == 200
        return self

    def dispatch(self, provider: str = "manual") -> Story:
        endpoint = AGENT_ENDPOINT if provider == "webhook" else None
        self.container.agents.add_sync(AgentSpec("desk", provider, endpoint, {}, ()))
        self.token = self.container.agents.issue_token_sync("desk")["token"]
        jobs = Jobs(RULES, "https://foundry.test", ROUTES)
        dispatcher = Dispatch(
            self.container.db, jobs=jobs, agent=None, owner="w", lease=timedelta(seconds=60), clock=utcnow
        )
        assert dispatcher.dispatch_once() == 1
        return self

    def send(self) -> Story:
        """The outbox, once through, with Linear and Slack write-back off (their effects skip)."""
        agents_client = WebhookAgentClient()
        sender = Sender(
            self.container.db,
            linear=None,
            slack=None,
            webhook_agents=agents_client,
            owner="s",
            lease=timedelta(seconds=30),
            max_attempts=1,
            clock=utcnow,
        )
        sender.send_some(50)
        agents_client.close()
        return self

    def report(self, body: dict[str, Any]) -> Story:
        bearer = {"Authorization": f"Bearer {self.token}"}
        response = self.client.post(f"/api/runs/{self.run_id}/events", json=body, headers=bearer)
        assert response.status_code == 202, response.text
        return self

    def github(self, fixture: str) -> Story:
        raw, headers = github_request(fixture, run_id=self.run_id)
        assert self.client.post("/webhooks/github", content=raw, headers=headers).status_code == 200
        return self


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(slack_signing_secret=SLACK_SECRET, github_webhook_secret=GITHUB_SECRET)


@pytest.fixture
def story(settings: Settings) -> Iterator[Story]:
    container = wiring.build(settings)
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield Story(client, container)
    logs.use_secrets(())


def sentences(view: dict[str, Any]) -> list[str]:
    return [event["sentence"] for event in view["timeline"]]


def effect(view: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [e for e in view["effects"] if e["kind"] == kind]
    return found


def to_pr_open(story: Story) -> Story:
    """An opened run planned, approved, dispatched to a person, whose PR is then reported."""
    story.plan().approve_in_slack().dispatch().send()
    return story.report(
        {"kind": "pr_opened", "pr_number": 318, "pr_url": "https://github.com/acme/web/pull/318"}
    )


def test_a_run_in_intake_says_who_opened_it_and_has_no_plan_yet(story: Story) -> None:
    view = story.open().view()
    assert view["run"]["status"] == "intake"
    assert set(run_reads.SHOWN_FIELDS) == set(view["run"])
    assert (view["plan"], view["repository"], view["effects"]) == (None, None, [])
    assert sentences(view) == ["Opened by dana@example.com (label)"]
    [opened] = view["timeline"]
    assert opened["data"] == {"trigger": "label", "event": "Issue.create"}
    assert opened["at"] and opened["delivery_id"] == view["deliveries"][0]["id"]
    assert view["links"] == {"issue": ISSUE_URL, "pull_request": None, "agent_session": None}


def test_a_run_awaiting_approval_shows_its_plan_where_it_works_and_why(story: Story) -> None:
    view = story.open().plan().view()
    assert view["run"]["status"] == "awaiting_approval"
    assert view["plan"] == {
        "summary": "ENG-42: Persist saved filters across sessions",
        "steps": [
            "Read the code involved in: Persist saved filters across sessions",
            "Implement and test: Saved filters persist",
            "Run the full test suite and open a pull request describing the change",
        ],
        "paths": ["src/auth/session.py"],
        "criteria": ["Saved filters persist"],
        "required_roles": ["lead"],
        "backend": "template",
        "notes": [],
    }
    assert view["repository"] == {"name": "acme/web", "reason": "team ENG → acme/web"}
    assert sentences(view)[1:] == [
        "Planning started",
        "Planned (template planner); needs approval by lead",
        "Routed to acme/web: team ENG → acme/web",
    ]


def test_effects_not_yet_sent_say_when_they_are_tried_and_what_they_will_say(story: Story) -> None:
    view = story.open().plan().view()
    assert [(e["kind"], e["state"], e["attempts"]) for e in view["effects"]] == [
        ("linear_comment", "pending", 0),
        ("slack_message", "pending", 0),
    ]
    comment, message = view["effects"]
    assert comment["key"] == f"run:{story.run_id}:plan_comment:0"
    assert comment["summary"] == "comment on the issue: plan comment"
    assert "Needs approval by: lead" in comment["payload"]["body"]
    assert message["summary"] == "approval request in Slack channel C0APPROVAL"
    for pending in view["effects"]:
        assert pending["next_attempt_at"] is not None
        assert (pending["sent_at"], pending["last_error"], pending["external_id"]) == (None, None, None)


def test_a_manual_agents_job_is_readable_in_the_effects_of_a_running_run(story: Story) -> None:
    view = story.open().plan().approve_in_slack().dispatch().send().view()
    assert view["run"]["status"] == "agent_running"
    job = effect(view, "agent_dispatch")
    assert (job["state"], job["attempts"], job["next_attempt_at"]) == ("sent", 1, None)
    assert job["sent_at"] is not None and job["external_id"] is None  # a person takes it: no key
    assert job["summary"] == "job to agent desk, attempt 1"
    assert job["payload"]["agent"] == "desk"
    assert job["payload"]["job"]["run_id"] == story.run_id
    assert job["payload"]["job"]["branch"] == f"foundry/eng-42-{story.run_id.replace('-', '')[:8]}"
    assert job["payload"]["job"]["repository"] == "acme/web"
    assert job["payload"]["job"]["plan"]["paths"] == ["src/auth/session.py"]
    assert "lee approved in Slack" in sentences(view)
    assert sentences(view)[-1] == "Dispatched to desk (attempt 1)"
    comments = [e for e in view["effects"] if e["kind"] == "linear_comment"]
    assert [e["state"] for e in comments] == ["skipped", "skipped"]  # Linear write-back is off here
    assert all("write-back is off" in e["last_error"] for e in comments)


def test_a_run_with_its_pull_request_links_it(story: Story) -> None:
    view = to_pr_open(story.open()).view()
    assert view["run"]["status"] == "pr_open"
    assert view["run"]["pr_repository"] == "acme/web"
    assert view["links"]["pull_request"] == "https://github.com/acme/web/pull/318"
    assert sentences(view)[-1] == "Pull request #318 opened"


def test_a_merged_run_says_so(story: Story) -> None:
    view = to_pr_open(story.open()).github("github_pull_request_closed_merged").view()
    assert view["run"]["status"] == "merged"
    assert sentences(view)[-1] == "Pull request #318 merged"
    assert {d["verdict"] for d in view["deliveries"]} >= {"opened", "decided", "updated"}


def test_a_failed_run_shows_the_effect_given_up_and_why(story: Story) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        router.post(AGENT_ENDPOINT).mock(return_value=httpx.Response(503))
        view = story.open().plan().approve_in_slack().dispatch("webhook").send().view()
    assert view["run"]["status"] == "failed"
    job = effect(view, "agent_dispatch")
    assert (job["state"], job["attempts"], job["next_attempt_at"], job["sent_at"]) == (
        "failed",
        1,
        None,
        None,
    )
    assert job["last_error"].startswith("agent: ")
    assert f"Gave up on the job to the agent after 1 attempt: {job['last_error']}" in sentences(view)
    assert sentences(view)[-1].startswith("Failed: the job could not be delivered to agent desk")


def test_a_sent_effect_names_what_it_made(story: Story, db_url: str) -> None:
    story.open()
    db = story.container.db
    made = outbox.Effect(
        f"run:{story.run_id}:slack_approval:0", "slack_message", {"channel": "C1"}, story.run_id
    )
    db.transaction_sync(lambda tx: outbox.enqueue(tx, made, now=utcnow()))
    claimed = db.transaction_sync(
        lambda tx: outbox.claim_due(tx, owner="t", now=utcnow(), ttl=timedelta(seconds=60))
    )
    assert claimed is not None
    result = {"channel": "C1", "ts": "1795689000.001200"}
    db.transaction_sync(lambda tx: outbox.settle(tx, claimed[0], now=utcnow(), state="sent", result=result))
    [sent] = story.view()["effects"]
    assert (sent["state"], sent["external_id"]) == ("sent", "1795689000.001200")


def test_secrets_never_appear_in_the_view(story: Story) -> None:
    """Wherever one was stored — the issue's text, an effect's payload, an error kept from before
    the secret was configured — the view shows `[redacted]`."""
    story.open(title=f"Rotate {SLACK_SECRET}", description=DESCRIPTION + f"- key {SLACK_SECRET} rotated\n")
    story.plan()
    db = story.container.db
    claimed = db.transaction_sync(
        lambda tx: outbox.claim_due(tx, owner="t", now=utcnow(), ttl=timedelta(seconds=60))
    )
    assert claimed is not None
    error = f"slack said: invalid_auth for {SLACK_SECRET}"
    db.transaction_sync(
        lambda tx: outbox.settle(
            tx, claimed[0], now=utcnow(), state="pending", error=error, next_attempt_at=utcnow()
        )
    )
    response = story.client.get(f"/api/runs/{story.run_id}", headers=API)
    assert response.status_code == 200
    assert SLACK_SECRET not in response.text and json.dumps(SLACK_SECRET)[1:-1] not in response.text
    view = response.json()
    assert view["run"]["title"] == f"Rotate {logs.REDACTED}"
    assert [e["last_error"] for e in view["effects"]].count(
        f"slack said: invalid_auth for {logs.REDACTED}"
    ) == 1
    assert all(SLACK_SECRET not in json.dumps(e["payload"]) for e in view["effects"])
    assert SLACK_SECRET not in json.dumps(story.container.runs.show_sync(story.run_id))


def test_the_short_id_that_runs_list_prints_finds_the_run(story: Story) -> None:
    story.open()
    assert story.view(story.run_id[:8]) == story.view()
    assert story.view(story.run_id[:8].upper())["run"]["id"] == story.run_id


def _insert(story: Story, run_id: str, issue: str) -> None:
    now = utcnow()
    run = runs.NewRun(run_id, issue, f"ENG-{issue[-1]}", "Twin", "intake", "label", now)
    opened = runs.NewEvent("opened", now, "dana@example.com")
    assert story.container.db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=now, max_recent=99)
    )


def test_a_short_id_several_runs_share_is_a_409_naming_them(story: Story) -> None:
    twins = [f"abcd1234-0000-4000-8000-00000000000{n}" for n in (1, 2)]
    for n, run_id in enumerate(twins):
        _insert(story, run_id, f"issue-{n}")
    response = story.client.get("/api/runs/abcd1234", headers=API)
    assert response.status_code == 409
    said = response.json()["error"]
    assert said.startswith("The short id abcd1234 matches several runs: ") and said.endswith(
        "give the full id."
    )
    assert all(f"{run_id} (ENG-" in said for run_id in twins)
    assert story.view(twins[1])["run"]["id"] == twins[1]  # the full id still finds each


@pytest.mark.parametrize("asked", ["0000ffff", "abcd123", "abcd12345", "abcd%", "ab_d1234"])
def test_a_short_id_no_run_has_is_a_404(story: Story, asked: str) -> None:
    _insert(story, "abcd1234-0000-4000-8000-000000000001", "issue-1")
    response = story.client.get(f"/api/runs/{asked}", headers=API)
    assert response.status_code == 404
    assert response.json() == {"error": f"No run has id {asked}."}


@pytest.fixture
def declared(story: Story) -> jsonschema_rs.Draft202012Validator:
    document = story.client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/RunView", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def test_the_view_is_what_openapi_declares_at_the_start_and_the_end(
    story: Story, declared: jsonschema_rs.Draft202012Validator
) -> None:
    declared.validate(story.open().view())
    declared.validate(to_pr_open(story).github("github_pull_request_closed_merged").view())


def test_the_effects_shown_are_the_newest_when_a_run_has_too_many(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_reads, "MAX_EFFECTS", 3)
    story.open()
    start = utcnow()
    for n in range(5):
        said = outbox.Effect(
            f"run:{story.run_id}:note_{n}:0", "linear_comment", {"body": str(n)}, story.run_id
        )
        story.container.db.transaction_sync(
            lambda tx, said=said, n=n: outbox.enqueue(tx, said, now=start + timedelta(seconds=n))
        )
    assert [e["payload"]["body"] for e in story.view()["effects"]] == ["2", "3", "4"]


def test_an_agent_session_links_to_its_issue(story: Story) -> None:
    story.open()
    story.container.db.transaction_sync(
        lambda tx: runs.adopt_session(tx, story.run_id, str(uuid.uuid4()), utcnow())
    )
    view = story.view()
    assert view["links"]["agent_session"] == ISSUE_URL
    assert sentences(view)[-1] == "Linear agent session opened"
