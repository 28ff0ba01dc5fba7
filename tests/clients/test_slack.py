"""The Slack client: messages tagged with their effect key, found again on retry instead of reposted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.errors import OutboundError
from foundry.clients.slack import PostedMessage, SlackClient
from tests.clients.conftest import assert_keeps_secret

BASE = "https://slack.com/api"
TOKEN = "xoxb-secret-0123456789"
CHANNEL = "C0FOUNDRY"
KEY = "run-1:approval:1"
BLOCKS: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approve?"}}]
POSTED = {"ok": True, "channel": CHANNEL, "ts": "1700000000.000100", "message": {"text": "Approve?"}}


@pytest.fixture
def slack() -> Iterator[SlackClient]:
    client = SlackClient(TOKEN)
    yield client
    client.close()


def post(slack: SlackClient, *, look_first: bool = False) -> PostedMessage:
    return slack.post_message(
        channel=CHANNEL, text="Approve?", blocks=BLOCKS, effect_key=KEY, look_first=look_first
    )


def history(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "messages": list(messages), "has_more": False}


def tagged(ts: str, effect_key: str, event_type: str = "foundry_effect") -> dict[str, Any]:
    metadata = {"event_type": event_type, "event_payload": {"effect_key": effect_key}}
    return {"type": "message", "ts": ts, "text": "…", "metadata": metadata}


def failure(slack: SlackClient) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        post(slack)
    assert_keeps_secret(caught.value, TOKEN)
    return caught.value


def test_post_message_sends_the_effect_key_as_message_metadata(
    api: respx.MockRouter, slack: SlackClient
) -> None:
    route = api.post(f"{BASE}/chat.postMessage").respond(200, json=POSTED)
    assert post(slack) == PostedMessage(channel=CHANNEL, ts="1700000000.000100")
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request.content) == {
        "channel": CHANNEL,
        "text": "Approve?",
        "blocks": BLOCKS,
        "metadata": {"event_type": "foundry_effect", "event_payload": {"effect_key": KEY}},
    }


def test_a_first_attempt_posts_without_reading_history(api: respx.MockRouter, slack: SlackClient) -> None:
    history_route = api.get(f"{BASE}/conversations.history").respond(200, json=history())
    api.post(f"{BASE}/chat.postMessage").respond(200, json=POSTED)
    post(slack)
    assert not history_route.called


def test_look_first_returns_the_message_an_earlier_attempt_posted_and_does_not_post(
    api: respx.MockRouter, slack: SlackClient
) -> None:
    answer = history(tagged("1700000000.000300", "other-key"), tagged("1700000000.000200", KEY))
    history_route = api.get(f"{BASE}/conversations.history").respond(200, json=answer)
    post_route = api.post(f"{BASE}/chat.postMessage").respond(200, json=POSTED)
    assert post(slack, look_first=True) == PostedMessage(channel=CHANNEL, ts="1700000000.000200")
    assert not post_route.called
    params = history_route.calls.last.request.url.params
    assert (params["channel"], params["limit"], params["include_all_metadata"]) == (CHANNEL, "100", "true")
    assert history_route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "messages",
    [[], [tagged("1.1", "other-key")], [tagged("1.1", KEY, event_type="someone_else")], [{"ts": "1.1"}]],
)
def test_look_first_posts_when_no_message_carries_the_key(
    api: respx.MockRouter, slack: SlackClient, messages: list[dict[str, Any]]
) -> None:
    api.get(f"{BASE}/conversations.history").respond(200, json=history(*messages))
    post_route = api.post(f"{BASE}/chat.postMessage").respond(200, json=POSTED)
    assert post(slack, look_first=True).ts == "1700000000.000100"
    assert post_route.call_count == 1


def test_look_first_that_cannot_read_history_does_not_post(api: respx.MockRouter, slack: SlackClient) -> None:
    api.get(f"{BASE}/conversations.history").respond(200, json={"ok": False, "error": "not_in_channel"})
    post_route = api.post(f"{BASE}/chat.postMessage").respond(200, json=POSTED)
    with pytest.raises(OutboundError) as caught:
        post(slack, look_first=True)
    assert caught.value.retryable is False
    assert not post_route.called


def test_update_message_sends_channel_ts_text_and_blocks(api: respx.MockRouter, slack: SlackClient) -> None:
    route = api.post(f"{BASE}/chat.update").respond(200, json={"ok": True, "channel": CHANNEL, "ts": "1.2"})
    slack.update_message(channel=CHANNEL, ts="1.2", text="Approved", blocks=BLOCKS)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "channel": CHANNEL,
        "ts": "1.2",
        "text": "Approved",
        "blocks": BLOCKS,
    }


def test_update_message_reports_slack_api_errors(api: respx.MockRouter, slack: SlackClient) -> None:
    api.post(f"{BASE}/chat.update").respond(200, json={"ok": False, "error": "message_not_found"})
    with pytest.raises(OutboundError, match="message_not_found") as caught:
        slack.update_message(channel=CHANNEL, ts="1.2", text="Approved", blocks=BLOCKS)
    assert caught.value.retryable is False


@pytest.mark.parametrize("error", ["invalid_auth", "not_authed", "token_revoked", "channel_not_found"])
def test_ok_false_errors_are_not_retryable_and_name_slacks_error(
    api: respx.MockRouter, slack: SlackClient, error: str
) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(200, json={"ok": False, "error": error})
    caught = failure(slack)
    assert caught.retryable is False
    assert error in str(caught)


@pytest.mark.parametrize("error", ["ratelimited", "internal_error", "fatal_error", "service_unavailable"])
def test_ok_false_errors_on_slacks_side_are_retryable(
    api: respx.MockRouter, slack: SlackClient, error: str
) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(200, json={"ok": False, "error": error})
    assert failure(slack).retryable is True


@pytest.mark.parametrize("body", [{"ok": False, "error": "ratelimited"}, None])
def test_http_429_is_retryable_with_its_retry_after(
    api: respx.MockRouter, slack: SlackClient, body: dict[str, Any] | None
) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(429, json=body, headers={"Retry-After": "3"})
    caught = failure(slack)
    assert (caught.retryable, caught.retry_after_s) == (True, 3.0)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable(api: respx.MockRouter, slack: SlackClient, status: int) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(status, text="oops")
    assert failure(slack).retryable is True


def test_a_rejected_token_status_is_not_retryable(api: respx.MockRouter, slack: SlackClient) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(401, text=f"bad token {TOKEN}")
    assert failure(slack).retryable is False


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_timeouts_and_connection_failures_are_retryable(
    api: respx.MockRouter, slack: SlackClient, exc: Exception
) -> None:
    api.post(f"{BASE}/chat.postMessage").mock(side_effect=exc)
    assert failure(slack).retryable is True


def test_an_answer_that_is_not_json_is_not_retryable(api: respx.MockRouter, slack: SlackClient) -> None:
    api.post(f"{BASE}/chat.postMessage").respond(200, text="<html>proxy</html>")
    assert failure(slack).retryable is False


def test_the_base_url_is_configurable(api: respx.MockRouter) -> None:
    route = api.post("http://slack.local/api/chat.postMessage").respond(200, json=POSTED)
    client = SlackClient(TOKEN, base_url="http://slack.local/api")
    post(client)
    client.close()
    assert route.called
