"""The agent clients: a webhook job signed over the very bytes sent, and a GitHub workflow_dispatch."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from foundry.clients import agents
from foundry.clients.agents import GitHubActionsClient, WebhookAgentClient
from foundry.clients.errors import OutboundError
from tests.clients.conftest import assert_keeps_secret

ENDPOINT = "https://agent.test/jobs"
SIGNING_KEY = "9f2c4e1a7b3d5f6081a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708"
KEY = "run-1:1"
# A marker that must never reach an error message, and text that must survive serialization unchanged.
JOB: dict[str, Any] = {
    "run_id": "run-1",
    "attempt": 1,
    "plan": "Rename the flag — naïvely ✓ SECRET-BODY-MARKER",
    "constraints": {"max_files_changed": 40, "forbidden_globs": ["infra/**"]},
}
JOB_BYTES = json.dumps(JOB, separators=(",", ":"), sort_keys=True).encode()

GITHUB = "https://api.github.com"
TOKEN = "ghp_secret0123456789abcdefghij"
DISPATCH = f"{GITHUB}/repos/acme/app/actions/workflows/agent.yml/dispatches"
INPUTS = {"run_id": "run-1", "attempt": "1", "job": json.dumps(JOB)}
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def webhook() -> Iterator[WebhookAgentClient]:
    client = WebhookAgentClient()
    yield client
    client.close()


@pytest.fixture
def github() -> Iterator[GitHubActionsClient]:
    client = GitHubActionsClient(TOKEN)
    yield client
    client.close()


def send(client: WebhookAgentClient, endpoint: str = ENDPOINT) -> None:
    client.send(endpoint=endpoint, body=JOB, idempotency_key=KEY, signing_key=SIGNING_KEY)


def send_failure(client: WebhookAgentClient, endpoint: str = ENDPOINT) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        send(client, endpoint)
    assert caught.value.service == "agent"
    assert_keeps_secret(caught.value, SIGNING_KEY)
    assert_keeps_secret(caught.value, "SECRET-BODY-MARKER")
    return caught.value


def dispatch(client: GitHubActionsClient, inputs: dict[str, Any] | None = None, **where: str) -> None:
    target = {"repository": "acme/app", "workflow": "agent.yml", **where}
    client.dispatch_workflow(**target, ref="main", inputs=INPUTS if inputs is None else inputs)


def dispatch_failure(client: GitHubActionsClient) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        dispatch(client)
    assert caught.value.service == "github"
    assert_keeps_secret(caught.value, TOKEN)
    return caught.value


def verifies(key: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


# The webhook agent


def test_send_posts_the_compact_sorted_json_with_key_and_signature(
    api: respx.MockRouter, webhook: WebhookAgentClient
) -> None:
    route = api.post(ENDPOINT).respond(202)
    send(webhook)
    request = route.calls.last.request
    assert request.url == ENDPOINT
    assert request.content == JOB_BYTES
    assert json.loads(request.content) == JOB
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["User-Agent"] == "foundry"
    assert "Authorization" not in request.headers


def test_the_signature_verifies_over_the_bytes_the_agent_received(
    api: respx.MockRouter, webhook: WebhookAgentClient
) -> None:
    route = api.post(ENDPOINT).respond(202)
    send(webhook)
    request = route.calls.last.request
    assert verifies(SIGNING_KEY, request.content, request.headers["X-Foundry-Signature"])
    assert not verifies("another-key", request.content, request.headers["X-Foundry-Signature"])
    assert not verifies(SIGNING_KEY, request.content + b" ", request.headers["X-Foundry-Signature"])


def test_an_agent_holding_its_token_can_verify_as_the_docstring_says() -> None:
    token = "fdy_agent-token"
    foundry_key = hashlib.sha256(token.encode()).hexdigest()  # what Foundry stores and signs with
    header = agents.signature(foundry_key, JOB_BYTES)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verifies(hashlib.sha256(token.encode()).hexdigest(), JOB_BYTES, header)


def test_the_same_job_is_sent_as_the_same_bytes_whatever_its_key_order(
    api: respx.MockRouter, webhook: WebhookAgentClient
) -> None:
    route = api.post(ENDPOINT).respond(202)
    send(webhook)
    webhook.send(
        endpoint=ENDPOINT, body=dict(reversed(JOB.items())), idempotency_key=KEY, signing_key=SIGNING_KEY
    )
    first, second = (call.request for call in route.calls)
    assert first.content == second.content
    assert first.headers["X-Foundry-Signature"] == second.headers["X-Foundry-Signature"]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_accepts_the_job(api: respx.MockRouter, webhook: WebhookAgentClient, status: int) -> None:
    api.post(ENDPOINT).respond(status)
    send(webhook)


def test_the_endpoint_keeps_its_query(api: respx.MockRouter, webhook: WebhookAgentClient) -> None:
    route = api.post("https://agent.test/jobs", params={"queue": "fast"}).respond(202)
    send(webhook, "https://agent.test/jobs?queue=fast")
    assert route.called


def test_a_redirect_is_not_followed_and_not_accepted(
    api: respx.MockRouter, webhook: WebhookAgentClient
) -> None:
    api.post(ENDPOINT).respond(307, headers={"Location": "https://elsewhere.test/jobs"})
    elsewhere = api.post("https://elsewhere.test/jobs").respond(202)
    assert send_failure(webhook).retryable is False
    assert not elsewhere.called


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_and_throttling_are_retryable(
    api: respx.MockRouter, webhook: WebhookAgentClient, status: int
) -> None:
    api.post(ENDPOINT).respond(status, text=f"echo {SIGNING_KEY} {JOB_BYTES.decode()}")
    assert send_failure(webhook).retryable is True


def test_429_carries_the_agents_retry_after(api: respx.MockRouter, webhook: WebhookAgentClient) -> None:
    api.post(ENDPOINT).respond(429, headers={"Retry-After": "12"})
    caught = send_failure(webhook)
    assert (caught.retryable, caught.retry_after_s) == (True, 12.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422])
def test_other_client_errors_are_not_retryable(
    api: respx.MockRouter, webhook: WebhookAgentClient, status: int
) -> None:
    api.post(ENDPOINT).respond(status, json={"error": f"bad signature {SIGNING_KEY}", "job": JOB})
    caught = send_failure(webhook)
    assert caught.retryable is False
    assert f"HTTP {status}" in str(caught)


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")]
)
def test_timeouts_and_connection_failures_are_retryable(
    api: respx.MockRouter, webhook: WebhookAgentClient, exc: Exception
) -> None:
    api.post(ENDPOINT).mock(side_effect=exc)
    assert send_failure(webhook).retryable is True


@pytest.mark.parametrize(
    "endpoint", ["not a url", "/jobs", "ftp://agent.test/jobs", "https://", "http://[::1"]
)
def test_a_malformed_endpoint_fails_for_good_without_a_request(
    api: respx.MockRouter, webhook: WebhookAgentClient, endpoint: str
) -> None:
    # `api` mocks every host with no routes: a request would fail the test, not this assertion.
    assert send_failure(webhook, endpoint).retryable is False


def test_a_body_that_is_not_json_is_refused_before_sending(
    api: respx.MockRouter, webhook: WebhookAgentClient
) -> None:
    route = api.post(ENDPOINT).respond(202)
    with pytest.raises(ValueError):
        webhook.send(endpoint=ENDPOINT, body={"cost": float("nan")}, idempotency_key=KEY, signing_key="k")
    assert not route.called


# GitHub Actions


def test_dispatch_posts_ref_and_inputs_with_githubs_headers(
    api: respx.MockRouter, github: GitHubActionsClient
) -> None:
    route = api.post(DISPATCH).respond(204)
    dispatch(github)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"ref": "main", "inputs": INPUTS}


def test_a_workflow_can_be_named_by_its_id(api: respx.MockRouter, github: GitHubActionsClient) -> None:
    route = api.post(f"{GITHUB}/repos/acme/app/actions/workflows/161335/dispatches").respond(204)
    dispatch(github, workflow="161335")
    assert route.called


def test_the_base_url_is_configurable(api: respx.MockRouter) -> None:
    route = api.post("http://ghe.local/api/v3/repos/acme/app/actions/workflows/agent.yml/dispatches")
    route.respond(204)
    client = GitHubActionsClient(TOKEN, base_url="http://ghe.local/api/v3")
    dispatch(client)
    client.close()
    assert route.called


@pytest.mark.parametrize("status", [200, 204])
def test_a_2xx_dispatches(api: respx.MockRouter, github: GitHubActionsClient, status: int) -> None:
    api.post(DISPATCH).respond(status)
    dispatch(github)


@pytest.mark.parametrize("value", [1, None, True, ["a"], {"k": "v"}])
def test_a_non_string_input_is_refused_without_a_request(
    api: respx.MockRouter, github: GitHubActionsClient, value: Any
) -> None:
    route = api.post(DISPATCH).respond(204)
    with pytest.raises(ValueError, match="attempt") as caught:
        dispatch(github, {"run_id": "run-1", "attempt": value})
    assert "run_id" not in str(caught.value)
    assert not route.called


@pytest.mark.parametrize(
    ("repository", "workflow"),
    [
        ("acme", "agent.yml"),
        ("acme/app/extra", "agent.yml"),
        ("acme/..", "agent.yml"),
        ("/app", "agent.yml"),
        ("acme/app", "../../../user"),
        ("acme/app", "agent.yml?x=1"),
        ("acme/app", ""),
        ("acme/app", ".."),
    ],
)
def test_a_repository_or_workflow_that_is_not_a_plain_name_is_refused_without_a_request(
    api: respx.MockRouter, github: GitHubActionsClient, repository: str, workflow: str
) -> None:
    with pytest.raises(ValueError):
        dispatch(github, repository=repository, workflow=workflow)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (422, 'Unexpected inputs provided: ["extra"]'),
        (422, "No ref found for: main"),
        (404, "Not Found"),
        (400, "Problems parsing JSON"),
    ],
)
def test_a_rejected_dispatch_is_not_retryable_and_keeps_githubs_reason(
    api: respx.MockRouter, github: GitHubActionsClient, status: int, message: str
) -> None:
    api.post(DISPATCH).respond(status, json={"message": message, "documentation_url": "https://docs"})
    caught = dispatch_failure(github)
    assert caught.retryable is False
    assert f"HTTP {status}" in str(caught) and message in str(caught)


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_token_is_not_retryable_and_never_echoed(
    api: respx.MockRouter, github: GitHubActionsClient, status: int
) -> None:
    api.post(DISPATCH).respond(status, json={"message": f"Bad credentials {TOKEN}"})
    caught = dispatch_failure(github)
    assert caught.retryable is False
    assert "credentials rejected" in str(caught) and "[redacted]" in str(caught)


def test_403_with_the_quota_spent_waits_until_the_reset(
    api: respx.MockRouter, github: GitHubActionsClient
) -> None:
    reset = int(time.time()) + 120
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    api.post(DISPATCH).respond(403, headers=headers, json={"message": "API rate limit exceeded"})
    caught = dispatch_failure(github)
    assert caught.retryable is True
    assert caught.retry_after_s is not None and 115 <= caught.retry_after_s <= 120


@pytest.mark.parametrize("status", [403, 429])
def test_a_rate_limit_with_retry_after_waits_that_long(
    api: respx.MockRouter, github: GitHubActionsClient, status: int
) -> None:
    api.post(DISPATCH).respond(status, headers={"Retry-After": "30"})
    caught = dispatch_failure(github)
    assert (caught.retryable, caught.retry_after_s) == (True, 30.0)


def test_a_secondary_rate_limit_named_only_in_the_message_waits_a_minute(
    api: respx.MockRouter, github: GitHubActionsClient
) -> None:
    message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    api.post(DISPATCH).respond(403, json={"message": message})
    caught = dispatch_failure(github)
    assert (caught.retryable, caught.retry_after_s) == (True, 60.0)


def test_a_403_that_is_not_a_rate_limit_is_not_retryable(
    api: respx.MockRouter, github: GitHubActionsClient
) -> None:
    headers = {"X-RateLimit-Remaining": "4999"}
    api.post(DISPATCH).respond(
        403, headers=headers, json={"message": "Resource not accessible by integration"}
    )
    assert dispatch_failure(github).retryable is False


@pytest.mark.parametrize("status", [500, 502, 503])
def test_githubs_server_errors_are_retryable(
    api: respx.MockRouter, github: GitHubActionsClient, status: int
) -> None:
    api.post(DISPATCH).respond(status, headers={"Retry-After": "5"})
    caught = dispatch_failure(github)
    assert (caught.retryable, caught.retry_after_s) == (True, 5.0)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_dispatch_timeouts_and_connection_failures_are_retryable(
    api: respx.MockRouter, github: GitHubActionsClient, exc: Exception
) -> None:
    api.post(DISPATCH).mock(side_effect=exc)
    assert dispatch_failure(github).retryable is True


def test_a_redirected_dispatch_is_not_accepted(api: respx.MockRouter, github: GitHubActionsClient) -> None:
    api.post(DISPATCH).respond(307, headers={"Location": f"{GITHUB}/repositories/1/dispatches"})
    assert dispatch_failure(github).retryable is False


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "30", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735733400"}, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735733400"}, 600.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735732000"}, 0.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"}, 60.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "inf"}, 60.0),
        ({"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "1735733400"}, 60.0),
        ({}, 60.0),
    ],
)
def test_rate_limit_wait_follows_githubs_order(headers: dict[str, str], wait: float) -> None:
    # NOW is 1735732800 in epoch seconds.
    assert agents.rate_limit_wait(httpx.Response(403, headers=headers), NOW) == wait
