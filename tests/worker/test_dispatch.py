"""Dispatch: approved runs reach their agent once, signed and keyed; credentials never leave."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.agents import WebhookAgentClient
from foundry.db import database, outbox, runs
from foundry.domain import policy, tokens
from foundry.services import effects
from foundry.services.dispatch import Dispatch
from foundry.services.jobs import Jobs
from foundry.services.sender import Sender
from tests import agentkit
from tests.worker.conftest import Clock, status

ENDPOINT = "https://agent.test/jobs"


@pytest.fixture
def make_dispatch(db: database.Database, clock: Clock) -> Callable[..., Dispatch]:
    def make(owner: str = "w1") -> Dispatch:
        jobs = Jobs(
            policy.Policy(forbidden_globs=("infra/**",), max_files_changed=40), "https://foundry.test"
        )
        return Dispatch(db, jobs=jobs, agent=None, owner=owner, lease=timedelta(seconds=60), clock=clock)

    return make


@pytest.fixture
def sender(db: database.Database, clock: Clock) -> Iterator[Sender]:
    agents_client = WebhookAgentClient()
    yield Sender(
        db,
        linear=None,
        slack=None,
        webhook_agents=agents_client,
        owner="s",
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=clock,
    )
    agents_client.close()


def dispatches(db: database.Database, run_id: str) -> list[Any]:
    rows = db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
    return [r for r in rows if r["kind"] == effects.AGENT_DISPATCH]


def test_an_approved_run_is_dispatched_once_with_its_job(
    db: database.Database, make_dispatch: Callable[..., Dispatch]
) -> None:
    agentkit.register(db, subscriptions=("team-a",), endpoint=ENDPOINT)
    run_id = agentkit.approved_run(db)
    assert make_dispatch().dispatch_once() == 1
    assert make_dispatch("w2").dispatch_once() == 0
    run = status(db, run_id)
    assert (run["status"], run["agent_name"], run["attempt"], run["agent_subscription"]) == (
        "agent_running",
        "coder",
        1,
        "team-a",
    )
    [job] = [row["payload"]["job"] for row in dispatches(db, run_id)]
    assert job["run_id"] == run_id and job["attempt"] == 1
    assert job["branch"] == f"foundry/eng-42-{run_id.replace('-', '')[:8]}"
    assert job["constraints"] == {"forbidden_globs": ["infra/**"], "max_files_changed": 40}
    assert job["callback_url"] == f"https://foundry.test/api/runs/{run_id}/events"
    assert job["subscription"] == "team-a"
    assert job["plan"]["summary"] == "Persist filters"


def test_without_an_agent_nothing_is_dispatched(
    db: database.Database, make_dispatch: Callable[..., Dispatch]
) -> None:
    run_id = agentkit.approved_run(db)
    make_dispatch().dispatch_once()
    assert status(db, run_id)["status"] == "approved"


def test_a_job_that_looks_like_it_carries_a_credential_is_refused_and_said_so(
    db: database.Database, make_dispatch: Callable[..., Dispatch]
) -> None:
    agentkit.register(db, endpoint=ENDPOINT)
    run_id = agentkit.approved_run(db, description="Use token ghp_" + "a" * 36 + " to deploy")
    make_dispatch().dispatch_once()
    assert status(db, run_id)["status"] == "blocked"
    assert dispatches(db, run_id) == []
    timeline = db.transaction_sync(lambda tx: runs.timeline(tx, run_id))
    assert timeline[-1]["kind"] == "secret_detected"
    assert timeline[-1]["data"] == {"from": "approved", "to": "blocked", "kinds": ["GitHub token"]}
    assert "ghp_" not in json.dumps(timeline[-1]["data"])


def test_the_sender_posts_the_job_signed_and_keyed_by_run_and_attempt(
    db: database.Database, make_dispatch: Callable[..., Dispatch], sender: Sender, clock: Clock
) -> None:
    token = agentkit.register(db, endpoint=ENDPOINT)
    run_id = agentkit.approved_run(db)
    make_dispatch().dispatch_once()
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(ENDPOINT).mock(side_effect=[httpx.Response(503), httpx.Response(202)])
        sender.send_once()
        clock.advance(2)
        sender.send_once()
        clock.advance(600)
        sender.send_once()
    assert route.call_count == 2
    for call in route.calls:
        request = call.request
        assert request.headers["Idempotency-Key"] == f"{run_id}:1"
        key = tokens.token_hash(token).encode()
        expected = "sha256=" + hmac.new(key, request.content, hashlib.sha256).hexdigest()
        assert request.headers["X-Foundry-Signature"] == expected
        assert json.loads(request.content)["run_id"] == run_id
    assert dispatches(db, run_id)[0]["state"] == "sent"


def test_a_stop_tells_the_agent_to_cancel(
    db: database.Database, make_dispatch: Callable[..., Dispatch], sql: Callable[[str], Any]
) -> None:
    from foundry.domain.triggers import Decision
    from foundry.services import decisions

    agentkit.register(db, endpoint=ENDPOINT)
    run_id = agentkit.approved_run(db)
    make_dispatch().dispatch_once()
    decider = decisions.Decider("operator", "api", None, all_roles=True)
    db.transaction_sync(lambda tx: decisions.decide(tx, run_id, Decision.STOP, decider, at=agentkit.NOW))
    cancels = [
        r
        for r in db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
        if r["kind"] == effects.AGENT_CANCEL
    ]
    assert [c["payload"] for c in cancels] == [{"agent": "coder", "attempt": 1, "run_id": run_id}]


def test_a_redispatch_after_failed_ci_carries_the_failing_checks(db: database.Database, clock: Clock) -> None:
    from foundry.clients.github import GitHubClient

    agentkit.register(db, endpoint=ENDPOINT)
    run_id = agentkit.running_run(db, "coder")
    context = {
        "reason": "ci_failed",
        "details": "GitHub Actions concluded failure",
        "repository": "acme/web",
        "head_sha": "3f9c2a7e",
    }
    job = {"type": "job", "run_id": run_id, "attempt": 2, "context": context}
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effects.dispatch(run_id, "coder", 2, job), now=clock()))
    checks = {
        "check_runs": [
            {
                "name": "unit tests",
                "conclusion": "failure",
                "output": {"title": "2 failed", "summary": "test_x failed"},
            },
            {"name": "lint", "conclusion": "success", "output": {"summary": "ok"}},
        ]
    }
    agents_client, reader = WebhookAgentClient(), GitHubClient("ghs", base_url="https://github.test")
    sender = Sender(
        db,
        linear=None,
        slack=None,
        webhook_agents=agents_client,
        github_reader=reader,
        owner="s",
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=clock,
    )
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get("https://github.test/repos/acme/web/commits/3f9c2a7e/check-runs").mock(
            return_value=httpx.Response(200, json=checks)
        )
        route = mock.post(ENDPOINT).mock(return_value=httpx.Response(202))
        assert sender.send_once() == 1
    agents_client.close()
    reader.close()
    sent = json.loads(route.calls[0].request.content)["context"]
    assert sent["failing_checks"] == [
        {"name": "unit tests", "conclusion": "failure", "summary": "test_x failed"}
    ]
    assert route.calls[0].request.headers["Idempotency-Key"] == f"{run_id}:2"
