"""GitHub deliveries follow the run's pull request — once each, however often they arrive."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database
from foundry.web.app import create_app
from tests import agentkit
from tests.factories import GITHUB_SECRET, github_event_request, github_request, github_resigned

FIXTURE_HEAD = "3f9c2a7e5b1d4c8f0a6e2b9d7c5a3f1e8b0d6c4a"  # the head the check suite fixture failed on
ROWS = (
    "SELECT (SELECT count(*) FROM run_events) + (SELECT count(*) FROM webhook_deliveries)"
    " + (SELECT count(*) FROM outbox)"
)


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


@pytest.fixture
def gh(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET, remediation={"max_retries": 2})
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def run_id(db: database.Database) -> str:
    agentkit.register(db)
    return agentkit.running_run(db, "coder")


def post(client: TestClient, name: str, run_id: str = "", **kw: Any) -> Any:
    raw, headers = github_request(name, run_id=run_id, **kw)
    return client.post("/webhooks/github", content=raw, headers=headers)


def post_event(client: TestClient, name: str, run_id: str = "") -> Any:
    """A new event of the fixture's shape (its own bytes): not a replay of an earlier one."""
    raw, headers = github_event_request(name, run_id=run_id)
    return client.post("/webhooks/github", content=raw, headers=headers)


def heads(n: int) -> list[str]:
    return [f"{i:x}" * 40 for i in range(1, n + 1)]


def post_failed_suite(client: TestClient, run_id: str, head: str) -> Any:
    """A check suite that failed on `head` (one failed head sends the agent back once)."""
    raw, headers = github_event_request("github_check_suite_failed", run_id=run_id)
    raw = raw.replace(FIXTURE_HEAD.encode(), head.encode())
    return client.post("/webhooks/github", content=raw, headers=github_resigned(raw, headers))


def status(sql: Callable[[str], Any], run_id: str) -> str:
    return str(sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'"))


def effects_of(sql: Callable[[str], Any], run_id: str, step: str) -> int:
    return int(sql(f"SELECT count(*) FROM outbox WHERE effect_key LIKE 'run:{run_id}:{step}:%%'"))


def test_ping_is_acknowledged(gh: TestClient) -> None:
    response = post(gh, "github_ping")
    assert response.status_code == 200
    assert response.json()["ignored"].startswith("ping")


def test_an_opened_pr_is_tied_to_its_run_commented_and_attached(
    gh: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    response = post(gh, "github_pull_request_opened", run_id)
    assert response.status_code == 200
    assert response.json() == {"outcome": "updated", "run_id": run_id, "changed": True}
    assert status(sql, run_id) == "pr_open"
    assert sql(f"SELECT pr_number FROM foundry_runs WHERE id = '{run_id}'") == 318
    assert sql(f"SELECT pr_repository FROM foundry_runs WHERE id = '{run_id}'") == "acme/web"
    assert effects_of(sql, run_id, "pr_opened") == 1
    assert effects_of(sql, run_id, "pr_attachment") == 1


@pytest.mark.parametrize(
    "name",
    [
        "github_pull_request_opened",
        "github_pull_request_synchronize",
        "github_check_suite_failed",
        "github_pull_request_review_changes_requested",
        "github_pull_request_closed_merged",
        "github_ping",
    ],
)
def test_each_delivery_redelivered_five_times_has_no_further_effect(
    gh: TestClient, run_id: str, sql: Callable[[str], Any], name: str
) -> None:
    if name != "github_pull_request_opened":
        post(gh, "github_pull_request_opened", run_id)
    first = post(gh, name, run_id, delivery="guid-1")
    assert first.status_code == 200
    before = (sql(ROWS), status(sql, run_id), sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'"))
    for _ in range(5):
        again = post(gh, name, run_id, delivery="guid-1")
        assert again.status_code == 200
        assert again.json()["outcome"] == "duplicate"
    after = (sql(ROWS), status(sql, run_id), sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'"))
    assert after == before


def test_a_pr_on_an_unknown_branch_is_ignored(gh: TestClient, run_id: str, sql: Callable[[str], Any]) -> None:
    from foundry.inbound import signatures

    stranger = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    raw, headers = github_request("github_pull_request_opened", run_id=stranger)
    raw = raw.replace(b"ENG-42", b"OPS-7").replace(b"eng-42", b"ops-7")  # names no run of ours
    headers["X-Hub-Signature-256"] = "sha256=" + signatures.hex_hmac(GITHUB_SECRET, raw)
    response = gh.post("/webhooks/github", content=raw, headers=headers)
    assert response.status_code == 200
    assert "ignored" in response.json()
    assert status(sql, run_id) == "agent_running"


def test_a_pr_is_found_by_its_marker_and_by_its_issue_identifier(
    gh: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    raw, headers = github_request("github_pull_request_opened", run_id=run_id)
    text = raw.decode().replace(f"foundry/eng-42-{run_id.replace('-', '')[:8]}", "feature/eng-42-filters")
    from foundry.inbound import signatures

    headers["X-Hub-Signature-256"] = "sha256=" + signatures.hex_hmac(GITHUB_SECRET, text.encode())
    assert gh.post("/webhooks/github", content=text.encode(), headers=headers).json()["run_id"] == run_id


def test_a_push_moves_the_head_and_merging_ends_the_run_with_one_comment(
    gh: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    post(gh, "github_pull_request_opened", run_id)
    post(gh, "github_pull_request_synchronize", run_id)
    assert sql(f"SELECT pr_head_sha FROM foundry_runs WHERE id = '{run_id}'").startswith("5d7e9f1a")
    post(gh, "github_pull_request_closed_merged", run_id)
    assert status(sql, run_id) == "merged"
    assert effects_of(sql, run_id, "merged") == 1
    assert effects_of(sql, run_id, "pr_attachment") == 1
    late = post_event(gh, "github_pull_request_synchronize", run_id)
    assert late.status_code == 200 and "ignored" in late.json()


def test_a_pr_closed_unmerged_closes_the_run(gh: TestClient, run_id: str, sql: Callable[[str], Any]) -> None:
    post(gh, "github_pull_request_opened", run_id)
    post(gh, "github_pull_request_closed_unmerged", run_id)
    assert status(sql, run_id) == "closed"


def test_ci_failing_three_times_redispatches_twice_then_needs_a_person(
    gh: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    post(gh, "github_pull_request_opened", run_id)
    for head in heads(3):  # the agent pushes a fix after each failure; CI fails on each new head
        post_failed_suite(gh, run_id, head)
    assert status(sql, run_id) == "review_required"
    assert sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'") == 3
    dispatched = sql(f"SELECT count(*) FROM outbox WHERE run_id = '{run_id}' AND kind = 'agent_dispatch'")
    assert dispatched == 2
    assert effects_of(sql, run_id, "needs_person") == 1
    job = sql(f"SELECT payload FROM outbox WHERE effect_key = 'run:{run_id}:dispatch:2'")
    context = (job if isinstance(job, dict) else __import__("json").loads(job))["job"]["context"]
    assert context["reason"] == "ci_failed" and "GitHub Actions concluded failure" in context["details"]
    post_failed_suite(gh, run_id, heads(4)[-1])  # a fourth failure: still one comment
    assert effects_of(sql, run_id, "needs_person") == 1


def test_requested_changes_send_the_agent_back_with_the_review(
    gh: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    post(gh, "github_pull_request_opened", run_id)
    post(gh, "github_pull_request_review_changes_requested", run_id)
    assert status(sql, run_id) == "agent_running"
    assert sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'") == 2
    post(gh, "github_pull_request_synchronize", run_id)  # the agent pushes the fix
    assert status(sql, run_id) == "pr_open"


@pytest.mark.parametrize("tamper", ["signature", "secret", "body"])
def test_a_delivery_that_is_not_from_github_is_refused_and_writes_nothing(
    gh: TestClient, run_id: str, sql: Callable[[str], Any], tamper: str
) -> None:
    raw, headers = github_request(
        "github_pull_request_opened", run_id=run_id, secret="other" if tamper == "secret" else GITHUB_SECRET
    )
    if tamper == "signature":
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    if tamper == "body":
        raw = raw.replace(b"318", b"319")
    before = sql(ROWS)
    response = gh.post("/webhooks/github", content=raw, headers=headers)
    assert response.status_code == 401
    assert sql(ROWS) == before


def test_a_malformed_delivery_is_a_400(gh: TestClient) -> None:
    from foundry.inbound import signatures

    raw = b'{"action": "opened", "pull_request": {"number": "x"}}'
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "g",
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(GITHUB_SECRET, raw),
    }
    assert gh.post("/webhooks/github", content=raw, headers=headers).status_code == 400


def test_merged_the_run_is_commented_once_attached_once_and_its_agent_loses_access(
    gh: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    post(gh, "github_pull_request_opened", run_id)
    assert (
        gh.post(
            f"/api/runs/{run_id}/events",
            json={"kind": "progress"},
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 202
    )
    post(gh, "github_pull_request_closed_merged", run_id)
    post(gh, "github_pull_request_closed_merged", run_id)  # GitHub sends it again (a new GUID)
    assert status(sql, run_id) == "merged"
    assert effects_of(sql, run_id, "merged") == 1
    assert effects_of(sql, run_id, "pr_attachment") == 1
    refused = gh.post(
        f"/api/runs/{run_id}/events", json={"kind": "progress"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403  # the run's grant to its agent ended with the run


def test_a_spent_budget_sends_the_run_to_a_person_instead_of_the_agent(
    make_settings: Callable[..., Any], db: database.Database, sql: Callable[[str], Any]
) -> None:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET, budget={"max_cost_per_issue": 1.0})
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    with TestClient(create_app(wiring.build(settings))) as client:
        post(client, "github_pull_request_opened", run_id)
        client.post(
            f"/api/runs/{run_id}/events",
            json={"kind": "cost", "usd": 1.5},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer = post(client, "github_check_suite_failed", run_id)
    assert "budget" in answer.json()["reason"]
    assert status(sql, run_id) == "review_required"
    assert sql(f"SELECT count(*) FROM outbox WHERE run_id = '{run_id}' AND kind = 'agent_dispatch'") == 0
