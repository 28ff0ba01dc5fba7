"""The Linear client: one comment per client-chosen id, and errors sorted into retry or give up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from foundry.clients import linear as linear_client
from foundry.clients.errors import OutboundError
from foundry.clients.linear import LinearClient
from tests.clients.conftest import assert_keeps_secret

URL = "https://api.linear.app/graphql"
KEY = "lin_api_secret_0123456789"
COMMENT_ID = "6f1c2b0e-5d1a-5b7e-9c3d-2a4f6e8b0c1d"
CREATED = {"data": {"commentCreate": {"success": True, "comment": {"id": COMMENT_ID}}}}


@pytest.fixture
def linear() -> Iterator[LinearClient]:
    client = LinearClient(KEY)
    yield client
    client.close()


def comment(linear: LinearClient) -> None:
    linear.create_comment(comment_id=COMMENT_ID, issue_id="issue-1", body="Plan ready")


def graphql_error(message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["extensions"] = {"code": code}
    return {"data": None, "errors": [error]}


def failure(linear: LinearClient) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        comment(linear)
    assert_keeps_secret(caught.value, KEY)
    return caught.value


def test_create_comment_sends_the_mutation_with_the_client_chosen_id(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    route = api.post(URL).respond(200, json=CREATED)
    comment(linear)
    request = route.calls.last.request
    assert request.headers["Authorization"] == KEY
    assert request.headers["Content-Type"] == "application/json"
    sent = json.loads(request.content)
    assert "commentCreate(input: {id: $id, issueId: $issueId, body: $body})" in sent["query"]
    assert sent["variables"] == {"id": COMMENT_ID, "issueId": "issue-1", "body": "Plan ready"}


def test_the_base_url_is_configurable(api: respx.MockRouter) -> None:
    route = api.post("http://linear.local/graphql").respond(200, json=CREATED)
    client = LinearClient(KEY, base_url="http://linear.local/graphql")
    client.create_comment(comment_id=COMMENT_ID, issue_id="issue-1", body="hi")
    client.close()
    assert route.called


@pytest.mark.parametrize(
    "answer",
    [
        graphql_error("Entity already exists"),
        graphql_error("Duplicate id: comment with this id exists"),
        graphql_error("Argument Validation Error", code="CONFLICT"),
    ],
)
@pytest.mark.parametrize("status", [200, 400])
def test_a_comment_id_linear_already_has_counts_as_created(
    api: respx.MockRouter, linear: LinearClient, answer: dict[str, Any], status: int
) -> None:
    api.post(URL).respond(status, json=answer)
    comment(linear)


def test_a_rate_limited_graphql_error_is_retryable_after_the_given_wait(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    answer = graphql_error("Rate limit exceeded", code="RATELIMITED")
    api.post(URL).respond(400, json=answer, headers={"Retry-After": "12"})
    error = failure(linear)
    assert error.retryable is True
    assert error.retry_after_s == 12.0


@pytest.mark.parametrize("status", [200, 400])
def test_other_graphql_errors_are_not_retryable_and_say_what_linear_said(
    api: respx.MockRouter, linear: LinearClient, status: int
) -> None:
    api.post(URL).respond(status, json=graphql_error("Entity not found: Issue", code="INVALID_INPUT"))
    error = failure(linear)
    assert error.retryable is False
    assert "Entity not found: Issue" in str(error)


def test_a_graphql_error_that_echoes_the_key_is_redacted(api: respx.MockRouter, linear: LinearClient) -> None:
    # The key starts just before the 200-character cut: no fragment of it may survive.
    long_message = "x" * 190 + f" key {KEY}"
    api.post(URL).respond(400, json=graphql_error(long_message, code="AUTHENTICATION_ERROR"))
    error = failure(linear)
    assert error.retryable is False
    assert KEY[:5] not in str(error)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable(api: respx.MockRouter, linear: LinearClient, status: int) -> None:
    api.post(URL).respond(status, text="upstream trouble")
    assert failure(linear).retryable is True


def test_a_server_error_with_graphql_errors_is_still_retryable(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    api.post(URL).respond(500, json=graphql_error("Internal server error", code="INTERNAL_SERVER_ERROR"))
    assert failure(linear).retryable is True


def test_http_429_is_retryable_with_its_retry_after(api: respx.MockRouter, linear: LinearClient) -> None:
    api.post(URL).respond(429, headers={"Retry-After": "30"})
    error = failure(linear)
    assert (error.retryable, error.retry_after_s) == (True, 30.0)


def test_http_429_with_a_graphql_error_body_is_still_retryable(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    api.post(URL).respond(429, json=graphql_error("Too many requests"), headers={"Retry-After": "5"})
    error = failure(linear)
    assert (error.retryable, error.retry_after_s) == (True, 5.0)


def test_a_rejected_key_is_not_retryable(api: respx.MockRouter, linear: LinearClient) -> None:
    api.post(URL).respond(401, text=f"bad key {KEY}")
    assert failure(linear).retryable is False


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_timeouts_and_connection_failures_are_retryable(
    api: respx.MockRouter, linear: LinearClient, exc: Exception
) -> None:
    api.post(URL).mock(side_effect=exc)
    assert failure(linear).retryable is True


def test_a_create_that_does_not_report_success_is_an_error(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    api.post(URL).respond(200, json={"data": {"commentCreate": {"success": False, "comment": None}}})
    assert failure(linear).retryable is False


def test_every_request_carries_the_configured_timeout(api: respx.MockRouter) -> None:
    route = api.post(URL).respond(200, json=CREATED)
    client = LinearClient(KEY, timeout_s=2.5)
    client.create_comment(comment_id=COMMENT_ID, issue_id="issue-1", body="hi")
    client.close()
    assert route.calls.last.request.extensions["timeout"]["read"] == 2.5


def test_an_issue_is_read_with_its_description(api: respx.MockRouter, linear: LinearClient) -> None:
    issue = {"id": "issue-1", "identifier": "ENG-42", "title": "T", "description": "D", "url": "u"}
    route = api.post(URL).mock(return_value=httpx.Response(200, json={"data": {"issue": issue}}))
    assert linear.issue("issue-1") == issue
    assert json.loads(route.calls[0].request.content)["variables"] == {"id": "issue-1"}


def test_a_missing_issue_is_not_retried(api: respx.MockRouter, linear: LinearClient) -> None:
    api.post(URL).mock(return_value=httpx.Response(200, json={"data": {"issue": None}}))
    with pytest.raises(OutboundError) as failed:
        linear.issue("nope")
    assert failed.value.retryable is False


@pytest.mark.parametrize(
    "extensions",
    [{"type": "ratelimited"}, {"type": "RATELIMITED"}, {"code": "ratelimited"}, {"code": "RATELIMITED"}],
)
@pytest.mark.parametrize("status", [200, 400])
def test_a_rate_limit_is_read_from_the_errors_type_or_code_in_any_case(
    api: respx.MockRouter, linear: LinearClient, extensions: dict[str, str], status: int
) -> None:
    answer = {"data": None, "errors": [{"message": "Rate limit exceeded", "extensions": extensions}]}
    api.post(URL).respond(status, json=answer, headers={"Retry-After": "3"})
    error = failure(linear)
    assert (error.retryable, error.retry_after_s) == (True, 3.0)


def test_without_retry_after_the_wait_runs_to_the_spent_budgets_reset(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    now_ms = time.time() * 1000
    headers = {
        "X-RateLimit-Requests-Remaining": "120",
        "X-RateLimit-Requests-Reset": str(int(now_ms + 3_600_000)),
        "X-RateLimit-Complexity-Remaining": "0",
        "X-RateLimit-Complexity-Reset": str(int(now_ms + 20_000)),
    }
    api.post(URL).respond(400, json=graphql_error("Rate limit exceeded", code="RATELIMITED"), headers=headers)
    wait = failure(linear).retry_after_s
    assert wait is not None and 18 <= wait <= 20


def test_a_reset_already_past_waits_nothing_and_a_garbled_one_is_ignored(
    api: respx.MockRouter, linear: LinearClient
) -> None:
    api.post(URL).respond(429, headers={"X-RateLimit-Requests-Reset": "1000"})
    assert failure(linear).retry_after_s == 0.0
    api.post(URL).respond(429, headers={"X-RateLimit-Requests-Reset": "soon"})
    assert failure(linear).retry_after_s is None


def test_an_authentication_error_typed_in_the_body_renews_like_a_401(api: respx.MockRouter) -> None:
    refused = {
        "errors": [{"message": "Authentication required", "extensions": {"type": "authentication error"}}]
    }
    route = api.post(URL).mock(
        side_effect=[httpx.Response(400, json=refused), httpx.Response(200, json=CREATED)]
    )
    renewed: list[str] = []

    class Rotating:
        def authorization(self) -> str:
            return "Bearer old"

        def renew(self, rejected: str) -> str | None:
            renewed.append(rejected)
            return "Bearer new"

    client = LinearClient(credentials=Rotating(), base_url=URL)
    comment(client)
    assert renewed == ["Bearer old"]
    assert [call.request.headers["Authorization"] for call in route.calls] == ["Bearer old", "Bearer new"]


@pytest.mark.parametrize("arguments", [{}, {"api_key": KEY, "credentials": linear_client.StaticKey(KEY)}])
def test_the_client_takes_a_key_or_credentials(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LinearClient(**arguments)
