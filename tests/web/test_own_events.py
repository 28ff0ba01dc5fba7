"""Events by Foundry's own Linear app user are ignored — with nothing in `triggers.bot_actor_ids` —
and an agent-session delivery names that user, which Foundry records when it does not know it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from foundry.db import database, provider_tokens
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request, post_linear

APP_USER = "foundry-app-user"
# The `appUserId` the agent-session fixtures carry.
FIXTURE_APP_USER = "4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c"
OTHER_ISSUE = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
OWN = "event from Foundry's own app user"


@pytest.fixture
def known(db_url: str) -> Iterator[Callable[[str], None]]:
    """Record Foundry's app user as a worker that asked Linear would."""
    db = database.Database(db_url)

    def record(actor_id: str) -> None:
        now = datetime.now(UTC)
        db.transaction_sync(lambda tx: provider_tokens.record_actor(tx, "linear", actor_id, now))

    yield record
    db.engine.dispose()


def post_as(client: TestClient, name: str, actor_id: str, **overrides: Any) -> httpx.Response:
    """A Linear comment fixture as written by `actor_id` (the rest of the body unchanged)."""
    body = linear_body(name, **overrides)
    body["actor"]["id"] = body["data"]["user"]["id"] = body["data"]["userId"] = actor_id
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    response: httpx.Response = client.post("/webhooks/linear", content=raw, headers=headers)
    return response


def test_a_start_comment_by_foundrys_app_user_opens_nothing(
    client: TestClient, known: Callable[[str], None], sql: Callable[[str], Any]
) -> None:
    known(APP_USER)
    response = post_as(client, "linear_comment_start", APP_USER)
    assert response.status_code == 200
    assert response.json()["ignored"] == OWN
    assert sql("SELECT count(*) FROM foundry_runs") == 0
    assert sql("SELECT verdict FROM webhook_deliveries WHERE event = 'Comment.create'") == "ignored"


def test_the_same_comment_by_a_person_opens_a_run(
    client: TestClient, known: Callable[[str], None], sql: Callable[[str], Any]
) -> None:
    known(APP_USER)
    response = post_linear(client, "linear_comment_start")
    assert response.status_code == 200
    assert response.json()["outcome"] == "opened"
    assert sql("SELECT count(*) FROM foundry_runs") == 1


def test_an_approval_by_foundrys_app_user_decides_nothing_and_a_persons_decides(
    client: TestClient, known: Callable[[str], None], sql: Callable[[str], Any]
) -> None:
    known(APP_USER)
    run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
    # Even carrying an approver's email: the actor is Foundry itself, so it is not a decision.
    own = post_as(client, "linear_comment_approve", APP_USER)
    assert own.status_code == 200
    assert own.json()["ignored"] == OWN
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "awaiting_approval"
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}'") == 1
    person = post_linear(client, "linear_comment_approve")
    assert person.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "approved"


def test_bot_actor_ids_still_ignore_other_bots(
    make_settings: Callable[..., Any], known: Callable[[str], None]
) -> None:
    from foundry import wiring
    from foundry.web.app import create_app

    known(APP_USER)
    settings = make_settings(triggers={"bot_actor_ids": ["another-bot"]})
    with TestClient(create_app(wiring.build(settings))) as client:
        bot = post_as(client, "linear_comment_start", "another-bot")
        assert bot.json()["ignored"] == "event from a bot actor"
        assert post_as(client, "linear_comment_start", APP_USER).json()["ignored"] == OWN


def test_an_agent_session_delivery_records_the_app_user_it_names(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    assert sql("SELECT count(*) FROM provider_tokens") == 0
    response = post_linear(client, "linear_agent_session_created")
    assert response.status_code == 200
    assert response.json()["outcome"] == "opened"
    assert sql("SELECT actor_id FROM provider_tokens WHERE provider = 'linear'") == FIXTURE_APP_USER
    # From then on that user's events are Foundry's own, in this process at once.
    answer = post_as(client, "linear_comment_start", FIXTURE_APP_USER, issue_id=OTHER_ISSUE)
    assert answer.json()["ignored"] == OWN


def test_a_known_app_user_is_not_replaced_by_a_delivery(
    client: TestClient, known: Callable[[str], None], sql: Callable[[str], Any]
) -> None:
    known(APP_USER)
    post_linear(client, "linear_agent_session_created")
    assert sql("SELECT actor_id FROM provider_tokens WHERE provider = 'linear'") == APP_USER
    assert post_as(client, "linear_comment_start", FIXTURE_APP_USER).json()["outcome"] == "attached"


def test_an_over_long_app_user_id_is_refused_and_records_nothing(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    body = linear_body("linear_agent_session_created")
    body["appUserId"] = "x" * 65
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    response = client.post("/webhooks/linear", content=raw, headers=headers)
    assert response.status_code == 400
    assert "appUserId" in response.json()["error"]
    assert sql("SELECT count(*) FROM provider_tokens") == 0


@pytest.mark.parametrize("flaw", ["no Linear-Delivery header", "no agentSession"])
def test_a_refused_agent_session_delivery_records_no_app_user(
    client: TestClient, sql: Callable[[str], Any], flaw: str
) -> None:
    body = linear_body("linear_agent_session_created")
    if flaw == "no agentSession":
        del body["agentSession"]
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    if flaw == "no Linear-Delivery header":
        del headers["Linear-Delivery"]
    assert client.post("/webhooks/linear", content=raw, headers=headers).status_code == 400
    assert sql("SELECT count(*) FROM provider_tokens") == 0
