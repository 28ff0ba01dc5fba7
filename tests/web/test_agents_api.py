"""The agents API: registry and tokens for the operator; events from agents, each for its own runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry.db import database
from tests import agentkit
from tests.conftest import API_TOKEN

OPERATOR = {"Authorization": f"Bearer {API_TOKEN}"}
CODER = {
    "name": "coder",
    "provider": "webhook",
    "endpoint": "https://agents.example/jobs",
    "subscriptions": ["team-a", "team-b"],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def test_an_agent_is_registered_listed_and_given_one_token_at_a_time(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    added = client.post("/api/agents", json=CODER, headers=OPERATOR)
    assert added.status_code == 201
    assert added.json()["current_subscription"] == "team-a"
    first = client.post("/api/agents/coder/tokens", headers=OPERATOR)
    second = client.post("/api/agents/coder/tokens", headers=OPERATOR)
    assert first.status_code == second.status_code == 201
    assert first.json()["token"].startswith("fdy_") and first.json()["token"] != second.json()["token"]
    assert second.json()["revoked"] == 1
    assert sql("SELECT count(*) FROM agent_tokens WHERE revoked_at IS NULL") == 1
    stored = sql("SELECT token_hash FROM agent_tokens WHERE revoked_at IS NULL")
    assert second.json()["token"] not in stored  # only the hash is kept
    listed = client.get("/api/agents", headers=OPERATOR).json()["agents"]
    assert [(a["name"], a["has_active_token"]) for a in listed] == [("coder", True)]
    revoked = client.delete("/api/agents/coder/tokens", headers=OPERATOR)
    assert revoked.json() == {"agent": "coder", "revoked": 1}
    assert sql("SELECT count(*) FROM agent_tokens WHERE revoked_at IS NULL") == 0


def test_a_token_replayed_by_idempotency_key_is_not_shown_again(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    client.post("/api/agents", json=CODER, headers=OPERATOR)
    first = client.post("/api/agents/coder/tokens", headers={**OPERATOR, "Idempotency-Key": "t-1"})
    again = client.post("/api/agents/coder/tokens", headers={**OPERATOR, "Idempotency-Key": "t-1"})
    assert first.json()["token"].startswith("fdy_")
    assert again.status_code == 201
    assert "shown once" in again.json()["token"]
    assert sql("SELECT count(*) FROM agent_tokens") == 1
    assert first.json()["token"] not in str(sql("SELECT response_body FROM idempotency_keys"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**CODER, "name": "Bad Name"}, "name"),
        ({**CODER, "provider": "carrier-pigeon"}, "provider"),
        ({**CODER, "endpoint": None}, "webhook agent needs"),
        ({"name": "gha", "provider": "github_actions", "config": {}}, "config.repository"),
        ({**CODER, "subscriptions": ["a", "a"]}, "distinct"),
        ({**CODER, "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_agent_is_a_400_naming_what_is_wrong(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/api/agents", json=body, headers=OPERATOR)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_names_are_unique_and_unknown_agents_are_404(client: TestClient) -> None:
    client.post("/api/agents", json=CODER, headers=OPERATOR)
    assert client.post("/api/agents", json=CODER, headers=OPERATOR).status_code == 409
    assert client.post("/api/agents/nobody/tokens", headers=OPERATOR).status_code == 404


def test_the_registry_needs_the_operator_token(client: TestClient, db: database.Database) -> None:
    token = agentkit.register(db)
    assert client.get("/api/agents").status_code == 401
    assert client.post("/api/agents/coder/tokens", headers=bearer(token)).status_code == 401


def events(client: TestClient, run_id: str, token: str, **body: Any) -> Any:
    return client.post(f"/api/runs/{run_id}/events", json=body, headers=bearer(token))


def test_an_agent_reports_progress_and_its_pr(
    client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    assert events(client, run_id, token, kind="started").status_code == 202
    assert events(client, run_id, token, kind="progress", message="tests pass").status_code == 202
    opened = events(
        client, run_id, token, kind="pr_opened", pr_number=318, pr_url="https://github.com/acme/app/pull/318"
    )
    assert opened.status_code == 202
    assert opened.json()["status"] == "pr_open"
    assert sql(f"SELECT pr_number FROM foundry_runs WHERE id = '{run_id}'") == 318
    again = events(client, run_id, token, kind="pr_opened", pr_number=318, pr_url="https://x/318")
    assert again.json()["changed"] is False
    other = events(client, run_id, token, kind="pr_opened", pr_number=999, pr_url="https://x/999")
    assert other.status_code == 409  # one run has at most one PR
    kinds = sql(
        f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' "
        "AND kind IN ('agent_started', 'agent_progress')"
    )
    assert kinds == 2


def test_cost_adds_up_on_the_run(client: TestClient, db: database.Database) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    events(client, run_id, token, kind="cost", usd=1.25)
    assert events(client, run_id, token, kind="cost", usd=0.5).json()["cost_usd"] == 1.75


def test_a_failed_attempt_is_redispatched_within_the_retries_then_the_run_fails(
    client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    for attempt in (2, 3):  # remediation.max_retries defaults to 2
        answer = events(client, run_id, token, kind="failed", reason="tests failed")
        assert answer.json()["redispatched"] is True
        assert sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'") == attempt
    last = events(client, run_id, token, kind="failed", reason="still failing")
    assert last.json() == {"run_id": run_id, "kind": "failed", "status": "failed", "redispatched": False}
    keys = sql(f"SELECT count(*) FROM outbox WHERE run_id = '{run_id}' AND kind = 'agent_dispatch'")
    assert keys == 2  # attempts 2 and 3, each its own job


@pytest.mark.parametrize("who", ["wrong", "revoked", "other agent", "missing"])
def test_a_token_works_only_for_its_agent_and_its_runs(
    client: TestClient, db: database.Database, sql: Callable[[str], Any], who: str
) -> None:
    token = agentkit.register(db)
    other = agentkit.register(db, "other")
    run_id = agentkit.running_run(db, "coder")
    if who == "revoked":
        client.delete("/api/agents/coder/tokens", headers=OPERATOR)
    headers = {
        "wrong": bearer("fdy_nope"),
        "revoked": bearer(token),
        "other agent": bearer(other),
        "missing": {},
    }[who]
    before = sql("SELECT count(*) FROM run_events")
    response = client.post(f"/api/runs/{run_id}/events", json={"kind": "started"}, headers=headers)
    assert response.status_code == (403 if who == "other agent" else 401)
    assert set(response.json()) == {"error"}
    assert sql("SELECT count(*) FROM run_events") == before


def test_a_finished_run_no_longer_accepts_its_agent(
    client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    sql(f"UPDATE foundry_runs SET status = 'stopped' WHERE id = '{run_id}'")
    assert events(client, run_id, token, kind="progress").status_code == 403


@pytest.mark.parametrize(
    "body", [{"kind": "teleported"}, {"kind": "pr_opened"}, {"kind": "cost"}, {"kind": "cost", "usd": -1}]
)
def test_a_malformed_event_is_a_400(client: TestClient, db: database.Database, body: dict[str, Any]) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    assert events(client, run_id, token, **body).status_code == 400


def test_a_later_attempt_reporting_the_same_pr_puts_the_run_back_on_it(
    client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    token = agentkit.register(db)
    run_id = agentkit.running_run(db, "coder", attempt=2)
    sql(f"UPDATE foundry_runs SET pr_number = 318, pr_url = 'https://x/318' WHERE id = '{run_id}'")
    first = events(client, run_id, token, kind="pr_opened", pr_number=318, pr_url="https://x/318")
    assert (first.json()["status"], first.json()["changed"]) == ("pr_open", True)
    again = events(client, run_id, token, kind="pr_opened", pr_number=318, pr_url="https://x/318")
    assert again.json()["changed"] is False
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'pr_pushed'") == 1
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "pr_open"
