"""`POST /jobs` refuses what it cannot trust or use, with a JSON error, and records nothing."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry.clients.agents import signature
from foundry.runner import options, wiring
from foundry.runner.wiring import Runner
from tests.runner.kit import AGENT_TOKEN, Kit


@pytest.fixture
def runner(kit: Kit) -> Iterator[Runner]:
    """The runner's parts, not started: what is recorded stays queued for the test to see."""
    parts = wiring.build(options.resolve(kit.settings(kit.root / "work"), env=dict(os.environ)))
    yield parts
    parts.close()


@pytest.fixture
def client(runner: Runner) -> TestClient:
    return TestClient(runner.app(), raise_server_exceptions=False)


def post(client: TestClient, body: Any, *, token: str = AGENT_TOKEN, key: str | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Foundry-Signature": signature(hashlib.sha256(token.encode()).hexdigest(), raw)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/jobs", content=raw, headers=headers)


def recorded(runner: Runner, run_id: str) -> dict[str, Any] | None:
    return runner.store.job(f"{run_id}:1")


def test_a_job_signed_with_another_token_is_refused_401(kit: Kit, client: TestClient, runner: Runner) -> None:
    job = kit.job()
    answer = post(client, job, token="fdy_some-other-agents-token-000000")
    assert answer.status_code == 401
    assert "X-Foundry-Signature" in answer.json()["error"]
    assert recorded(runner, job["run_id"]) is None


def test_a_job_without_a_signature_is_refused_401(kit: Kit, client: TestClient) -> None:
    assert client.post("/jobs", json=kit.job()).status_code == 401


def test_a_body_changed_after_signing_is_refused_401(kit: Kit, client: TestClient) -> None:
    raw = json.dumps(kit.job()).encode()
    headers = {"X-Foundry-Signature": signature(hashlib.sha256(AGENT_TOKEN.encode()).hexdigest(), raw)}
    answer = client.post("/jobs", content=raw.replace(b"ENG-42", b"ENG-43"), headers=headers)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        ({"type": "other"}, "type"),
        ({"type": "job", "run_id": "r1"}, "attempt"),
    ],
)
def test_a_malformed_body_is_refused_400(client: TestClient, body: Any, says: str) -> None:
    answer = post(client, body)
    assert answer.status_code == 400
    assert says in answer.json()["error"]


def test_a_job_that_names_no_repository_is_refused_400_with_the_reason(
    kit: Kit, client: TestClient, runner: Runner
) -> None:
    job = kit.job()
    for name in ("repository", "base_branch", "clone_url"):
        del job[name]
    answer = post(client, job)
    assert answer.status_code == 400
    assert "no repository, base_branch, clone_url" in answer.json()["error"]
    assert "cannot guess" in answer.json()["error"]
    assert recorded(runner, job["run_id"]) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("branch", "--upload-pack=touch x"),
        ("branch", "foundry/../../etc"),
        ("branch", "a b"),
        ("base_branch", "-main"),
        ("clone_url", "ext::sh -c touch% /tmp/pwned"),
        ("clone_url", "--upload-pack=touch /tmp/pwned"),
        ("repository", "acme/../etc"),
        ("repository", "acme/app/extra"),
        ("run_id", "../../etc"),
        ("callback_url", "file:///etc/passwd"),
    ],
)
def test_a_field_that_would_reach_git_or_a_path_in_a_bad_shape_is_refused_400(
    kit: Kit, client: TestClient, field: str, value: str
) -> None:
    job = kit.job()
    job[field] = value
    answer = post(client, job, key=f"{job['run_id']}:1")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(field)


def test_an_idempotency_key_that_disagrees_with_the_signed_body_is_refused(
    kit: Kit, client: TestClient
) -> None:
    job = kit.job()
    answer = post(client, job, key=f"{job['run_id']}:7")
    assert answer.status_code == 400
    assert f"{job['run_id']}:1" in answer.json()["error"]


def test_a_job_is_recorded_before_its_202_and_once(kit: Kit, client: TestClient, runner: Runner) -> None:
    job = kit.job()
    first = post(client, job, key=f"{job['run_id']}:1")
    assert first.status_code == 202 and first.json()["state"] == "queued"
    stored = recorded(runner, job["run_id"])
    assert stored is not None and stored["state"] == "queued" and json.loads(stored["body"]) == job
    second = post(client, job)
    assert second.status_code == 200 and second.json() == {
        "duplicate": True,
        "state": "queued",
        "run_id": job["run_id"],
        "attempt": 1,
    }


def test_a_body_over_the_limit_is_refused_413(client: TestClient) -> None:
    answer = post(client, b"{" + b" " * (1024 * 1024 + 1) + b"}")
    assert answer.status_code == 413


def test_unknown_routes_answer_json(client: TestClient) -> None:
    answer = client.get("/nope")
    assert answer.status_code == 404 and "error" in answer.json()
    assert client.get("/jobs").status_code == 405
    assert client.get("/healthz").json() == {"ok": True}
