"""Signed sample deliveries for `foundry deliveries send-test`: each one is accepted and changes nothing.

Each sample is shaped like the provider's own delivery (the fixtures in `tests/fixtures/`) and
signed as the provider signs it, with the configured secret, so a `200` proves the secret, the
URL and the receiver all agree. None can have an effect: Linear's is a title edit on an issue no
run knows (and without the trigger label), GitHub's is a `ping`, Slack's is a click on Approve for
a run that does not exist, by someone who is no approver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

SOURCES = ("linear", "github", "slack")
SECRETS = {
    "linear": "FOUNDRY_LINEAR_WEBHOOK_SECRET",
    "github": "FOUNDRY_GITHUB_WEBHOOK_SECRET",
    "slack": "FOUNDRY_SLACK_SIGNING_SECRET",
}
# Who the samples say acted: an id no configuration names as an approver or a bot.
ACTOR_ID = "foundry-send-test"
SLACK_USER = "USENDTEST0"


@dataclass(frozen=True)
class Sample:
    source: str
    path: str
    body: bytes
    headers: dict[str, str]
    # What a Foundry that accepts it answers, in words.
    expected: str


def build(source: str, secret: str, *, now: datetime, nonce: str) -> Sample:
    """The sample for `source`, signed with `secret`; `nonce` (a fresh UUID) makes it a new delivery."""
    return _BUILDERS[source](secret, now, nonce)


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def linear(secret: str, now: datetime, nonce: str) -> Sample:
    at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    issue = {
        "id": f"send-test-{nonce}",
        "identifier": "TEST-0",
        "title": "Foundry send-test",
        "description": "A sample delivery from `foundry deliveries send-test`.",
        "updatedAt": at,
        "labelIds": [],
        "labels": [],
        "url": "https://linear.app/example/issue/TEST-0",
    }
    body = _json(
        {
            "action": "update",
            "type": "Issue",
            "actor": {"id": ACTOR_ID, "name": "foundry deliveries send-test", "type": "user"},
            "createdAt": at,
            "data": issue,
            "updatedFrom": {"updatedAt": at, "title": "Foundry send-test (before)"},
            "url": issue["url"],
            "webhookTimestamp": round(now.timestamp() * 1000),
            "webhookId": "foundry-send-test",
        }
    )
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Linear-Delivery": nonce,
        "Linear-Event": "Issue",
        "Linear-Signature": _hex_hmac(secret, body),
    }
    return Sample("linear", "/webhooks/linear", body, headers, "200, ignored: a title edit opens nothing")


def github(secret: str, now: datetime, nonce: str) -> Sample:
    body = _json(
        {
            "zen": f"Foundry send-test {nonce}",
            "hook_id": 0,
            "hook": {
                "type": "Repository",
                "active": True,
                "events": ["pull_request", "pull_request_review", "check_suite"],
                "config": {"content_type": "json", "insecure_ssl": "0"},
            },
            "sender": {"login": ACTOR_ID, "type": "User"},
        }
    )
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": nonce,
        "X-GitHub-Hook-ID": "send-test",
        "X-Hub-Signature-256": "sha256=" + _hex_hmac(secret, body),
    }
    return Sample("github", "/webhooks/github", body, headers, "200, ignored: a ping")


def slack(secret: str, now: datetime, nonce: str) -> Sample:
    stamp = str(int(now.timestamp()))
    payload = {
        "type": "block_actions",
        "user": {"id": SLACK_USER, "username": ACTOR_ID, "name": ACTOR_ID},
        "team": {"id": "TSENDTEST0", "domain": "example"},
        "actions": [
            {
                "type": "button",
                "action_id": "foundry_approve",
                "block_id": "foundry_decision",
                # No run has this id: the click is recorded and decides nothing.
                "value": nonce,
                "action_ts": f"{now.timestamp():.6f}",
            }
        ],
    }
    body = ("payload=" + quote_plus(json.dumps(payload, separators=(",", ":")))).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + _hex_hmac(secret, b"v0:" + stamp.encode() + b":" + body),
    }
    return Sample("slack", "/webhooks/slack", body, headers, "200, ignored: no such run to decide")


_BUILDERS: dict[str, Callable[[str, datetime, str], Sample]] = {
    "linear": linear,
    "github": github,
    "slack": slack,
}
