"""A delegated issue, lived in Linear's agent panel: every milestone one activity, the plan kept
current, Stop honoured — with a fake Linear that holds every call to Linear's published schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.linear import BearerToken, LinearClient
from foundry.db import database, outbox
from foundry.domain import effects, policy
from foundry.services import dispatch, planning
from foundry.services.jobs import Jobs
from foundry.services.sender import Sender
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import agentkit
from tests.conftest import LINEAR_SECRET
from tests.factories import GITHUB_SECRET, github_request, linear_body, linear_request, post_linear
from tests.linear_fake import FakeLinear
from tests.worker.conftest import Clock, Now, drain

LINEAR = "https://linear.test/graphql"
ISSUE = "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42"
SESSION = "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e"
PUBLIC = "https://foundry.example.com"


@pytest.fixture
def clock() -> Clock:
    return Now()


@pytest.fixture
def linear() -> Iterator[FakeLinear]:
    fake = FakeLinear()
    fake.add_issue(ISSUE, identifier="ENG-42", state="unstarted")
    fake.add_session(SESSION, ISSUE)
    with respx.mock(assert_all_mocked=False, assert_all_called=False) as api:
        api.post(LINEAR).mock(side_effect=fake)
        api.route(host="testserver").pass_through()
        yield fake


@pytest.fixture
def web(make_settings: Callable[..., Settings]) -> Callable[..., TestClient]:
    def make(**overrides: Any) -> TestClient:
        values = {"github_webhook_secret": GITHUB_SECRET, "public_url": PUBLIC, **overrides}
        return TestClient(create_app(wiring.build(make_settings(**values))), raise_server_exceptions=False)

    return make


def sender(db: database.Database, clock: Clock, *, app: bool = True) -> Sender:
    client = (
        LinearClient(credentials=BearerToken("lin_oauth_app"), base_url=LINEAR)
        if app
        else LinearClient("lin_api_personal", base_url=LINEAR)
    )
    return Sender(
        db,
        linear=client,
        slack=None,
        owner="sender-1",
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=clock,
    )


def kinds(fake: FakeLinear, session: str = SESSION) -> list[str]:
    return [activity["content"]["type"] for activity in fake.activities_of(session)]


def plan_states(fake: FakeLinear, session: str = SESSION) -> list[str]:
    return [step["status"] for step in fake.sessions[session]["plan"]]


def test_a_delegation_is_answered_at_once_with_a_thought_the_runs_page_and_a_started_issue(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear
) -> None:
    with web() as client:
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
    assert drain(sender(db, clock)) == 2
    [thought] = linear.activities_of(SESSION)
    assert thought["content"]["type"] == "thought"
    assert thought["id"] == effects.linear_activity_id(effects.key(run_id, f"session_ack_{SESSION}"))
    assert linear.sessions[SESSION]["externalUrls"] == [
        {"label": "Foundry run", "url": f"{PUBLIC}/runs/{run_id}"}
    ]
    assert linear.issues[ISSUE]["state"]["id"] == "state-started"  # the team's first started state
    assert linear.refused == [] and linear.comments == {}


def test_the_whole_course_is_one_activity_per_milestone_and_the_plan_follows_the_run(
    web: Callable[..., TestClient],
    db: database.Database,
    clock: Clock,
    linear: FakeLinear,
    make_planning: Callable[..., planning.Planning],
) -> None:
    send = sender(db, clock)
    token = agentkit.register(db, provider="manual")
    with web() as client:
        for _ in range(2):  # Linear redelivers: one run, one answer
            run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
        drain(send)
        assert make_planning(channel=None).plan_once() == 1
        drain(send)
        assert kinds(linear) == ["thought", "elicitation"]
        assert "/foundry approve" in linear.activities_of(SESSION)[1]["content"]["body"]
        assert plan_states(linear) == ["completed", "inProgress", "pending", "pending", "pending"]

        assert post_linear(client, "linear_comment_approve").json()["outcome"] == "decided"
        drain(send)
        jobs = Jobs(agentkit_policy(), PUBLIC)
        assert dispatch.Dispatch(
            db, jobs=jobs, agent=None, owner="w", lease=timedelta(60), clock=clock
        ).dispatch_once()
        drain(send)
        assert plan_states(linear) == ["completed", "completed", "completed", "inProgress", "pending"]

        report = {"kind": "pr_opened", "pr_number": 318, "pr_url": "https://github.com/acme/app/pull/318"}
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post(f"/api/runs/{run_id}/events", json=report, headers=headers).status_code == 202
        drain(send)
        raw, gh = github_request("github_pull_request_closed_merged", run_id=run_id)
        for _ in range(2):  # GitHub's redelivery of the same event: one merge
            assert client.post("/webhooks/github", content=raw, headers=gh).status_code == 200
        drain(send)

    assert kinds(linear) == ["thought", "elicitation", "action", "action", "action", "response"]
    actions = [a["content"] for a in linear.activities_of(SESSION) if a["content"]["type"] == "action"]
    assert [a["action"] for a in actions] == [
        "Approved",
        "Dispatched to the coding agent",
        "Opened pull request",
    ]
    assert "https://github.com/acme/app/pull/318" in actions[2]["parameter"]
    assert plan_states(linear) == ["completed"] * 5
    assert linear.refused == []
    assert linear.comments == {}  # a session run speaks in its session, not in comments
    assert drain(send) == 0


def agentkit_policy() -> policy.Policy:
    return policy.Policy((), {}, None)


def test_stop_in_the_panel_stops_the_run_cancels_the_agent_and_ends_the_session_once(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear, sql: Any
) -> None:
    agentkit.register(db, provider="manual")
    with web() as client:
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
        running = "status = 'agent_running', agent_name = 'coder', attempt = 1"
        sql(f"UPDATE foundry_runs SET {running} WHERE id = '{run_id}'")
        raw, headers = linear_request(linear_body("linear_agent_session_prompted_stop"), secret=LINEAR_SECRET)
        assert client.post("/webhooks/linear", content=raw, headers=headers).json()["outcome"] == "cancelled"
        headers["Linear-Delivery"] = "a-retry-of-the-same-bytes"
        assert client.post("/webhooks/linear", content=raw, headers=headers).json()["outcome"] == "duplicate"
        again = post_linear(client, "linear_agent_session_prompted_stop")  # pressed again, new bytes
        assert again.json()["ignored"] == "no active run to stop"
    drain(sender(db, clock))
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "stopped"
    cancel = db.transaction_sync(lambda tx: outbox.find(tx, effects.key(run_id, "cancel", 1)))
    assert cancel is not None and cancel["state"] == "sent"
    assert kinds(linear) == ["thought", "error"]
    assert "stopped" in linear.activities_of(SESSION)[-1]["content"]["body"].lower()


def test_stop_with_no_run_left_still_ends_the_session_with_one_final_word(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear
) -> None:
    with web() as client:
        answer = post_linear(client, "linear_agent_session_prompted_stop")
    assert answer.json()["ignored"] == "no active run to stop"
    drain(sender(db, clock))
    assert kinds(linear) == ["response"]


def test_a_prompt_is_acknowledged_once_and_reaches_the_agent_with_its_next_job(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear, sql: Any
) -> None:
    agentkit.register(db, provider="manual")
    with web() as client:
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
        for _ in range(2):
            assert post_linear(client, "linear_agent_session_prompted").status_code == 200
    drain(sender(db, clock))
    assert kinds(linear) == ["thought", "thought"]
    assert "next job" in linear.activities_of(SESSION)[1]["content"]["body"]
    sql(f"UPDATE foundry_runs SET status = 'approved' WHERE id = '{run_id}'")
    jobs = Jobs(agentkit_policy(), PUBLIC)
    dispatch.Dispatch(db, jobs=jobs, agent=None, owner="w", lease=timedelta(60), clock=clock).dispatch_once()
    job = db.transaction_sync(lambda tx: outbox.find(tx, effects.key(run_id, "dispatch", 1)))["payload"][
        "job"
    ]
    assert job["prompts"] == [{"from": "dana@example.com", "prompt": "Please also cover the mobile client."}]


@pytest.mark.parametrize(("said", "status"), [("approve", "approved"), ("/foundry reject", "rejected")])
def test_a_prompt_from_an_approver_decides_like_a_comment(
    web: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    db: database.Database,
    clock: Clock,
    linear: FakeLinear,
    sql: Any,
    said: str,
    status: str,
) -> None:
    dana = {"name": "Dana Okafor", "linear_email": "dana@example.com", "roles": ["lead"]}
    with web(approvals={"approvers": [dana]}) as client:
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
        sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
        body = _prompted(said)
        assert (
            client.post("/webhooks/linear", content=body[0], headers=body[1]).json()["outcome"] == "decided"
        )
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == status
    drain(sender(db, clock))
    assert kinds(linear)[-1] == ("action" if status == "approved" else "error")


def test_a_prompted_decision_from_someone_else_is_refused_and_answered_in_the_session(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear, sql: Any
) -> None:
    with web() as client:  # Dana is not an approver here
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
        sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
        raw, headers = _prompted("approve")
        client.post("/webhooks/linear", content=raw, headers=headers)
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "awaiting_approval"
    drain(sender(db, clock))
    assert kinds(linear) == ["thought", "thought"]
    assert "not an approver" in linear.activities_of(SESSION)[-1]["content"]["body"]


def _prompted(body: str) -> tuple[bytes, dict[str, str]]:
    payload = linear_body("linear_agent_session_prompted")
    payload["agentActivity"]["content"]["body"] = body
    return linear_request(payload, secret=LINEAR_SECRET)


def test_with_a_personal_key_a_session_runs_milestones_are_posted_as_comments(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear
) -> None:
    with web() as client:
        run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
    drain(sender(db, clock, app=False))
    assert linear.activities == {}
    assert list(linear.comments) == [effects.linear_comment_id(effects.key(run_id, f"session_ack_{SESSION}"))]


def test_with_sessions_for_all_runs_a_labelled_issue_gets_a_session_once(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear, sql: Any
) -> None:
    with web(linear={"sessions_for_all_runs": True}) as client:
        run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    drain(sender(db, clock))
    [session] = [s for s in linear.sessions if s != SESSION]
    assert sql(f"SELECT agent_session_id FROM foundry_runs WHERE id = '{run_id}'") == session
    assert linear.sessions[session]["externalUrls"][0]["url"] == f"{PUBLIC}/runs/{run_id}"
    assert kinds(linear, session) == ["thought"]
    assert linear.operations().count("CreateSession") == 1


def test_a_session_created_again_after_a_crash_is_found_not_made_twice(
    web: Callable[..., TestClient], db: database.Database, clock: Clock, linear: FakeLinear, sql: Any
) -> None:
    with web(linear={"sessions_for_all_runs": True}) as client:
        run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    key = effects.key(run_id, "session_create")
    send = sender(db, clock)
    # The first attempt created the session in Linear, then its worker died before recording it.
    linear.sessions["session-made-before"] = {
        "id": "session-made-before",
        "issueId": ISSUE,
        "plan": None,
        "externalUrls": [{"label": "Foundry run", "url": f"{PUBLIC}/runs/{run_id}"}],
    }
    sql(f"UPDATE outbox SET attempts = 1 WHERE effect_key = '{key}'")
    drain(send)
    assert sql(f"SELECT agent_session_id FROM foundry_runs WHERE id = '{run_id}'") == "session-made-before"
    assert "CreateSession" not in linear.operations()


def test_a_sessions_activities_reach_linear_in_the_order_they_were_decided(
    web: Callable[..., TestClient],
    db: database.Database,
    clock: Clock,
    linear: FakeLinear,
    make_planning: Callable[..., planning.Planning],
) -> None:
    with web() as client:
        post_linear(client, "linear_agent_session_created")
    linear.rate_limit(1, reset_s=30)  # the thought waits for Linear's reset ...
    send = sender(db, clock)
    assert send.send_once() == 1
    clock.advance(1)
    assert make_planning(channel=None).plan_once() == 1
    drain(send)  # ... and the plan's elicitation, decided later, waits behind it
    assert linear.activities == {}
    clock.advance(60)
    drain(send)
    assert kinds(linear) == ["thought", "elicitation"]
