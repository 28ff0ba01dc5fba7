"""Sixteen approvals from three surfaces, threads and two server processes: one `approved`."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from foundry.inbound import signatures
from tests import servers
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import FIXTURES, linear_body, linear_request

SLACK_SECRET = "slack-test-secret"
APPROVERS = """
[[approvals.approvers]]
name = "Lee Marsh"
slack_user_id = "U0LEAD0001"
linear_email = "lead@example.com"
roles = ["lead"]
"""


def slack_click(fixture: str, run_id: str) -> tuple[bytes, dict[str, str]]:
    payload = json.loads((FIXTURES / f"{fixture}.json").read_text())
    payload["actions"][0]["value"] = run_id
    payload["actions"][0]["action_ts"] = f"{time.time():.6f}{uuid.uuid4().hex[:4]}"  # a distinct click
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + signatures.hex_hmac(SLACK_SECRET, b"v0:" + stamp.encode() + b":" + raw)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }
    return raw, headers


def requests_for(run_id: str) -> list[tuple[str, bytes, dict[str, str]]]:
    clicks = [("/webhooks/slack", *slack_click("slack_block_actions_approve", run_id)) for _ in range(10)]
    outsider = [("/webhooks/slack", *slack_click("slack_block_actions_approve_outsider", run_id))]
    sent_ms = int(time.time() * 1000)  # three distinct comments, each its own webhookTimestamp
    bodies = [linear_body("linear_comment_approve", timestamp_ms=sent_ms - n) for n in range(3)]
    comments = [("/webhooks/linear", *linear_request(body, secret=LINEAR_SECRET)) for body in bodies]
    api = [(f"/api/runs/{run_id}/approve", b"", {"Authorization": f"Bearer {API_TOKEN}"})] * 3
    return clicks + outsider + comments + api


def fire(base: str, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))

    def one(request: tuple[str, bytes, dict[str, str]]) -> httpx.Response:
        path, raw, headers = request
        with httpx.Client(base_url=base, timeout=30) as client:
            barrier.wait(timeout=30)
            return client.post(path, content=raw, headers=headers)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def test_approvals_from_every_surface_at_once_give_one_approved_transition(
    db_url: str, sql: Callable[[str], Any], tmp_path: Path
) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text(APPROVERS)
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_API_TOKEN=API_TOKEN,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
        FOUNDRY_SLACK_SIGNING_SECRET=SLACK_SECRET,
    )
    with servers.foundry_web(env, workers=2, log=tmp_path / "web.log") as base:
        raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
        run_id = httpx.post(f"{base}/webhooks/linear", content=raw, headers=headers).json()["run_id"]
        sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
        responses = fire(base, requests_for(run_id))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    changed = Counter(r.json().get("changed") for r in responses)
    assert changed == {True: 1, False: 16}
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "approved"
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'approved'") == 1
    refused = sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'decision_refused'")
    assert refused == 1  # the outsider, recorded
    assert sql("SELECT count(*) FROM webhook_deliveries WHERE verdict = 'refused'") == 1
