"""`foundry web` and two `foundry worker` processes: a labelled issue to a PR, every effect once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from foundry.db import database
from foundry.domain import effects
from foundry.inbound import signatures
from tests import agentkit, servers
from tests.agentkit import AgentServer
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import FIXTURES, linear_body, linear_request
from tests.fakes import Providers

SLACK_SECRET = "slack-test-secret"
CONFIG = """
[slack]
channel = "C0APPROVAL"

[worker]
poll_s = 0.05
# Notifications wake the workers at once; a dead worker's lease is noticed at the fallback poll.
idle_poll_s = 0.2

[[approvals.approvers]]
name = "Lee Marsh"
slack_user_id = "U0LEAD0001"
linear_email = "lead@example.com"
roles = ["lead"]
"""


@pytest.fixture
def providers() -> Iterator[tuple[Providers, str]]:
    fake = Providers()
    with servers.in_thread(fake.app) as base:
        yield fake, base


def click_approve(run_id: str) -> tuple[bytes, dict[str, str]]:
    payload = json.loads((FIXTURES / "slack_block_actions_approve.json").read_text())
    payload["actions"][0]["value"] = run_id
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + signatures.hex_hmac(SLACK_SECRET, b"v0:" + stamp.encode() + b":" + raw)
    return raw, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }


@pytest.fixture
def agent_server() -> Iterator[tuple[AgentServer, str]]:
    server = AgentServer()
    with servers.in_thread(server.app) as base:
        yield server, base


def test_web_and_two_workers_take_an_issue_to_a_pull_request_with_every_effect_once(
    db_url: str,
    providers: tuple[Providers, str],
    agent_server: tuple[AgentServer, str],
    tmp_path: Path,
    sql: Callable[[str], Any],
) -> None:
    fake, base = providers
    agent, agent_base = agent_server
    db = database.Database(db_url)
    token = agentkit.register(db, endpoint=f"{agent_base}/jobs")
    db.engine.dispose()
    config = tmp_path / "foundry.toml"
    config.write_text(CONFIG)
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_API_TOKEN=API_TOKEN,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
        FOUNDRY_SLACK_SIGNING_SECRET=SLACK_SECRET,
        FOUNDRY_LINEAR_API_KEY="lin-test",
        FOUNDRY_LINEAR_API_URL=f"{base}/linear/graphql",
        FOUNDRY_SLACK_BOT_TOKEN="xoxb-test",
        FOUNDRY_SLACK_API_URL=f"{base}/slack",
    )
    port = servers.free_port()
    env["FOUNDRY_PUBLIC_URL"] = f"http://127.0.0.1:{port}"  # the callback URL the agent is given
    workers = [
        subprocess.Popen(
            servers.foundry_command("worker"),
            env=env,
            stdout=(tmp_path / f"worker-{n}.out").open("wb"),
            stderr=(tmp_path / f"worker-{n}.log").open("wb"),
        )
        for n in range(2)
    ]
    try:
        # Each worker has set its SIGTERM handler once it says it started; a SIGTERM before that
        # (the flow may finish while a worker is still importing) would end it with -15.
        for n in range(2):
            out = tmp_path / f"worker-{n}.out"
            servers.wait_until(
                lambda out=out: " started" in out.read_text(),
                deadline_s=servers.STARTUP_DEADLINE_S,
                what="a foundry worker to start",
            )
        with servers.foundry_web(env, workers=1, log=tmp_path / "web.log", port=port) as web:
            raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
            for _ in range(3):  # Linear redelivers: still one run
                opened = httpx.post(f"{web}/webhooks/linear", content=raw, headers=headers)
            run_id = opened.json()["run_id"]
            servers.wait_until(lambda: len(fake.slack_posts) == 1, deadline_s=30, what="the approval message")
            for _ in range(3):  # three clicks, one decision
                raw, headers = click_approve(run_id)
                httpx.post(f"{web}/webhooks/slack", content=raw, headers=headers)
            servers.wait_until(
                lambda: len(fake.slack_updates) == 1 and len(fake.comments) == 2,
                deadline_s=30,
                what="the decision's comment and message edit",
            )
            servers.wait_until(lambda: agent.logical_jobs == 1, deadline_s=30, what="the agent's job")
            job = json.loads(agent.requests[0]["body"])
            pr = {"kind": "pr_opened", "pr_number": 318, "pr_url": "https://github.com/acme/app/pull/318"}
            for _ in range(2):  # the agent retries its report: still one PR, one comment
                reported = httpx.post(
                    job["callback_url"], json=pr, headers={"Authorization": f"Bearer {token}"}
                )
                assert reported.status_code == 202, reported.text
            servers.wait_until(lambda: len(fake.comments) == 3, deadline_s=30, what="the PR comment")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        assert [worker.wait(15) for worker in workers] == [0, 0]
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "pr_open"
    assert job["branch"] == f"foundry/eng-42-{run_id.replace('-', '')[:8]}"
    assert agent.requests[0]["headers"]["idempotency-key"] == f"{run_id}:1"
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    plan = effects.linear_comment_id(effects.key(run_id, "plan_comment"))
    approval = effects.linear_comment_id(effects.key(run_id, "decision_approved"))
    opened = effects.linear_comment_id(effects.key(run_id, "pr_opened"))
    assert fake.comments == {plan: 1, approval: 1, opened: 1}
    assert len(fake.slack_posts) == 1
    assert fake.slack_updates[0]["ts"] == "1795689000.000001"
    assert "approved by" in fake.slack_updates[0]["text"]
    assert sql("SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0
