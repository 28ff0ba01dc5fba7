"""Slack's Web API: approval messages, posted at most once by tagging each with its effect key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from foundry.clients import errors, http
from foundry.clients.errors import OutboundError

SERVICE = "slack"
EVENT_TYPE = "foundry_effect"
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}

# Slack reports these with HTTP 200 and `ok: false`; each is Slack's trouble, not our request's.
# `internal_error` and `fatal_error` may have half-happened, which `look_first` on the retry covers.
_TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable"})
# How far back `look_first` searches: one page, far more than a crashed attempt's window needs.
_HISTORY_LIMIT = 100


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


class SlackClient:
    def __init__(self, bot_token: str, *, base_url: str = "https://slack.com/api", timeout_s: float = 10.0):
        self._secret = bot_token
        headers = {"Authorization": f"Bearer {bot_token}"}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        effect_key: str,
        look_first: bool = False,
    ) -> PostedMessage:
        """Post once. Slack has no idempotency key, so the message carries `effect_key` in its metadata,
        and a retry (`look_first`) returns the message an earlier attempt posted instead of a second one."""
        if look_first:
            found = self._find(channel, effect_key)
            if found is not None:
                return found
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"effect_key": effect_key}}
        body = {"channel": channel, "text": text, "blocks": blocks, "metadata": metadata}
        answer = self._call("POST", "chat.postMessage", json=body)
        return _posted(answer)

    def update_message(self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self._call("POST", "chat.update", json={"channel": channel, "ts": ts, "text": text, "blocks": blocks})

    def _find(self, channel: str, effect_key: str) -> PostedMessage | None:
        """The recent message in `channel` tagged with `effect_key`, if any (`channel` must be an id)."""
        params = {"channel": channel, "limit": str(_HISTORY_LIMIT), "include_all_metadata": "true"}
        answer = self._call("GET", "conversations.history", params=params)
        for message in answer.get("messages") or []:
            ts = message.get("ts") if isinstance(message, dict) else None
            if isinstance(ts, str) and _effect_key(message) == effect_key:
                return PostedMessage(channel=channel, ts=ts)
        return None

    def _call(
        self, method: str, api: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        headers = JSON_UTF8 if json is not None else None
        response = http.send(self._client, SERVICE, method, api, json=json, params=params, headers=headers)
        http.check_status(SERVICE, response)
        answer = http.json_object(response)
        if answer is None:
            raise OutboundError(SERVICE, f"{api} answered something that is not JSON", retryable=False)
        if answer.get("ok") is not True:
            raise _api_error(api, answer, response, self._secret)
        return answer


def _api_error(api: str, answer: dict[str, Any], response: httpx.Response, secret: str) -> OutboundError:
    # Slack's `error` is a short code, but an invalid_auth has been seen echoing the token.
    error = errors.detail(str(answer.get("error", "unknown_error")), secret)
    if error in _TRANSIENT_ERRORS:
        wait = http.retry_after(response, datetime.now(UTC))
        return OutboundError(SERVICE, f"{api}: {error}", retryable=True, retry_after_s=wait)
    return OutboundError(SERVICE, f"{api}: {error}", retryable=False)


def _effect_key(message: dict[str, Any]) -> object:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    return payload.get("effect_key") if isinstance(payload, dict) else None


def _posted(answer: dict[str, Any]) -> PostedMessage:
    channel, ts = answer.get("channel"), answer.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        raise OutboundError(SERVICE, "chat.postMessage answered without channel and ts", retryable=False)
    return PostedMessage(channel=channel, ts=ts)
