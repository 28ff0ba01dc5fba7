"""No configured secret reaches a log line or a stored row, however a provider echoes it back."""

from __future__ import annotations

import io
import json
import typing
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import respx
import sqlalchemy as sa
from pydantic import SecretStr

from foundry import logs, wiring
from foundry.db import database, outbox, schema
from foundry.services import effects
from foundry.settings import Settings
from tests import agentkit
from tests.worker.conftest import status

LINEAR = "https://linear.test/graphql"
SLACK = "https://slack.test/api"
GITHUB = "https://github.test"
AGENT = "https://agent.test/jobs"


def secret_settings() -> dict[str, str]:
    """A distinctive value for every SecretStr setting there is (a new one is covered unasked)."""
    names = [
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
    ]
    return {name: f"{name.replace('_', '-')}-{uuid.uuid4().hex}" for name in names}


def stored_text(db: database.Database) -> str:
    """Every row of every table, as text."""
    dumped = []
    for table in schema.metadata.sorted_tables:
        rows = db.transaction_sync(lambda tx, t=table: tx.rows(sa.select(t)), write=False)
        dumped.append(json.dumps([dict(r) for r in rows], default=str))
    return "\n".join(dumped)


def test_no_configured_secret_is_logged_or_stored_when_providers_echo_them(
    db: database.Database, make_settings: Callable[..., Settings], log_lines: io.StringIO
) -> None:
    secrets = secret_settings()
    assert len(secrets) >= 9
    settings = make_settings(
        **secrets,
        linear_api_url=LINEAR,
        slack_api_url=SLACK,
        github_api_url=GITHUB,
        worker={"outbox_max_attempts": 1},
    )
    assert set(secrets.values()) <= set(wiring.secret_values(settings))
    loops = {getattr(loop, "__name__", ""): loop for loop in wiring.worker_loops(settings, db, "w1")}
    agent_token = agentkit.register(db, endpoint=AGENT)
    run_id = agentkit.approved_run(db)
    assert loops["dispatch_once"]() == 1
    run = status(db, run_id)
    asked = effects.plan_ready(run, _plan(), (), "C0APPROVAL")[1]
    db.transaction_sync(lambda tx: outbox.enqueue(tx, asked, now=agentkit.NOW))
    # Every configured secret. An agent's token is not one: Foundry keeps only its hash, so only
    # the agent's own answer can echo it, and no answer body is ever kept.
    everything = " ".join(secrets.values())

    with respx.mock(assert_all_mocked=True, assert_all_called=True) as api:
        api.post(f"{SLACK}/chat.postMessage").mock(
            return_value=httpx.Response(200, json={"ok": False, "error": f"invalid_auth {everything}"})
        )
        # Configured as a Linear app, Foundry first mints its own token, then Linear refuses it.
        api.post("https://api.linear.app/oauth/token").mock(
            return_value=httpx.Response(
                200, json={"access_token": "lin_minted_0001", "token_type": "Bearer", "expires_in": 3600}
            )
        )
        api.post(LINEAR).mock(
            return_value=httpx.Response(
                400,
                json={
                    "errors": [
                        {
                            "message": f"Authentication failed for {secrets['linear_api_key']}",
                            "extensions": {"code": "AUTHENTICATION_ERROR"},
                        }
                    ]
                },
            )
        )
        api.post(AGENT).mock(
            return_value=httpx.Response(500, text=f"token {agent_token} rejected: {everything}")
        )
        sent = [loops["send_some"]() for _ in range(6)]
    logs.get("foundry.test").error(
        "echo", detail=f"a provider said {everything}", nested={"deep": [everything]}
    )

    assert sum(sent) == 3  # the job, the Slack message, and the comment saying the run failed
    assert status(db, run_id)["status"] == "failed"
    written, stored = log_lines.getvalue(), stored_text(db)
    assert [json.loads(line)["event"] for line in written.splitlines()].count("outbox.attempt") == 3
    for value in [*secrets.values(), agent_token]:
        assert value not in written
        assert value not in stored
    slack = db.transaction_sync(lambda tx: outbox.find(tx, asked.effect_key))
    assert slack["last_error"].startswith("slack: chat.postMessage: invalid_auth [redacted]")
    assert "rejected again after renewal" in stored  # Linear refused the minted token twice
    assert "[redacted]" in written


def _plan() -> Any:
    from foundry.domain.plans import Plan

    return Plan("A plan", ("step",), (), ("criterion",), "template")
