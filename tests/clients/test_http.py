"""The shared request helper: how statuses, transport failures and Retry-After are read."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import respx

from foundry.clients import http
from foundry.clients.errors import OutboundError

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_in_seconds_is_read_as_a_number() -> None:
    assert http.retry_after(httpx.Response(429, headers={"Retry-After": "7"}), NOW) == 7.0


def test_retry_after_as_a_date_is_measured_from_the_responses_own_date() -> None:
    headers = {"Retry-After": "Wed, 01 Jan 2025 10:00:30 GMT", "Date": "Wed, 01 Jan 2025 10:00:00 GMT"}
    assert http.retry_after(httpx.Response(503, headers=headers), NOW) == 30.0


def test_retry_after_as_a_date_without_a_date_header_is_measured_from_now() -> None:
    headers = {"Retry-After": "Wed, 01 Jan 2025 12:01:00 GMT"}
    assert http.retry_after(httpx.Response(503, headers=headers), NOW) == 60.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}])
def test_retry_after_missing_or_unreadable_gives_no_wait(headers: dict[str, str]) -> None:
    assert http.retry_after(httpx.Response(429, headers=headers), NOW) is None


def test_retry_after_in_the_past_waits_zero() -> None:
    assert http.retry_after(httpx.Response(429, headers={"Retry-After": "-5"}), NOW) == 0.0


@pytest.mark.parametrize(
    ("status", "retryable"), [(200, None), (404, False), (401, False), (429, True), (502, True)]
)
def test_check_status_retries_only_throttling_and_server_errors(status: int, retryable: bool | None) -> None:
    if retryable is None:
        http.check_status("svc", httpx.Response(status))
        return
    with pytest.raises(OutboundError) as caught:
        http.check_status("svc", httpx.Response(status))
    assert caught.value.retryable is retryable


def test_a_redirect_loop_is_not_retryable(api: respx.MockRouter) -> None:
    api.get("https://example.test/a").respond(302, headers={"Location": "https://example.test/a"})
    with httpx.Client(follow_redirects=True) as client, pytest.raises(OutboundError) as caught:
        http.send(client, "svc", "GET", "https://example.test/a")
    assert caught.value.retryable is False
