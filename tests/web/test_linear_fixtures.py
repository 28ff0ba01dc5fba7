"""Each Linear fixture, signed, gives the outcome the fixtures README names — on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.factories import post_linear

ACTIVE_ENG_42 = (
    "SELECT count(*) FROM foundry_runs WHERE linear_issue_id = '5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42'"
    " AND status NOT IN ('stopped', 'rejected', 'closed', 'merged', 'failed', 'blocked',"
    " 'needs_clarification')"
)


def open_eng_42(client: TestClient) -> str:
    response = post_linear(client, "linear_issue_create_labeled")
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "opened"
    run_id: str = response.json()["run_id"]
    return run_id


def test_issue_created_with_the_label_opens_a_run(client: TestClient, sql: Callable[[str], Any]) -> None:
    run_id = open_eng_42(client)
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "intake"
    assert sql(f"SELECT kind FROM run_events WHERE run_id = '{run_id}' AND seq = 1") == "opened"


@pytest.mark.parametrize(
    "name", ["linear_issue_update_label_added", "linear_comment_start", "linear_agent_session_created"]
)
def test_every_opening_route_opens_a_run_on_a_fresh_issue(
    client: TestClient, sql: Callable[[str], Any], name: str
) -> None:
    response = post_linear(client, name)
    assert response.status_code == 200
    assert response.json()["outcome"] == "opened"
    assert sql(ACTIVE_ENG_42) == 1


@pytest.mark.parametrize(
    "name", ["linear_issue_update_label_added", "linear_comment_start", "linear_agent_session_created"]
)
def test_the_same_intent_by_another_route_attaches_to_the_active_run(
    client: TestClient, sql: Callable[[str], Any], name: str
) -> None:
    run_id = open_eng_42(client)
    response = post_linear(client, name)
    assert response.status_code == 200
    assert response.json() == {"outcome": "attached", "run_id": run_id}
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql(f"SELECT count(*) FROM webhook_deliveries WHERE run_id = '{run_id}'") == 2


def test_a_title_edit_is_ignored_and_never_opens_a_second_run(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    open_eng_42(client)
    response = post_linear(client, "linear_issue_update_title_only")
    assert response.status_code == 200
    assert "ignored" in response.json()
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT verdict FROM webhook_deliveries WHERE event = 'Issue.update'") == "ignored"


@pytest.mark.parametrize(
    "name", ["linear_issue_update_label_removed", "linear_issue_update_canceled", "linear_issue_remove"]
)
def test_removal_cancellation_and_deletion_stop_the_active_run(
    client: TestClient, sql: Callable[[str], Any], name: str
) -> None:
    run_id = open_eng_42(client)
    response = post_linear(client, name)
    assert response.status_code == 200
    assert response.json() == {"outcome": "cancelled", "run_id": run_id}
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "stopped"
    assert sql(f"SELECT kind FROM run_events WHERE run_id = '{run_id}' AND seq = 2") == "stopped"


@pytest.mark.parametrize(
    "name", ["linear_issue_update_label_removed", "linear_issue_update_canceled", "linear_issue_remove"]
)
def test_a_stop_with_no_active_run_is_ignored(client: TestClient, name: str) -> None:
    response = post_linear(client, name)
    assert response.status_code == 200
    assert response.json()["ignored"] == "no active run to stop"


def test_removing_another_label_does_not_stop_a_run_opened_by_comment(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    run_id = post_linear(client, "linear_comment_start").json()["run_id"]
    response = post_linear(client, "linear_issue_update_label_removed")
    assert response.status_code == 200
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "intake"


def test_an_issue_without_criteria_still_opens_a_run(client: TestClient) -> None:
    # Readiness (needs_clarification) is the planner's verdict, made by the worker.
    response = post_linear(client, "linear_issue_create_no_criteria")
    assert response.status_code == 200
    assert response.json()["outcome"] == "opened"


def test_an_agent_session_prompt_is_added_to_the_active_run(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    run_id = post_linear(client, "linear_agent_session_created").json()["run_id"]
    response = post_linear(client, "linear_agent_session_prompted")
    assert response.status_code == 200
    assert response.json() == {"outcome": "updated", "run_id": run_id}
    assert sql(f"SELECT kind FROM run_events WHERE run_id = '{run_id}' ORDER BY seq DESC") == "prompt"


def _await_approval(sql: Callable[[str], Any], run_id: str) -> None:
    sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")


@pytest.mark.parametrize(
    ("name", "status"), [("linear_comment_approve", "approved"), ("linear_comment_reject", "rejected")]
)
def test_an_approver_decides_the_waiting_run_by_comment(
    client: TestClient, sql: Callable[[str], Any], name: str, status: str
) -> None:
    run_id = open_eng_42(client)
    _await_approval(sql, run_id)
    response = post_linear(client, name)
    assert response.status_code == 200
    assert response.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == status
    assert sql(f"SELECT actor FROM run_events WHERE run_id = '{run_id}' AND seq = 2") == "lead@example.com"


def test_a_second_approval_changes_nothing(client: TestClient, sql: Callable[[str], Any]) -> None:
    run_id = open_eng_42(client)
    _await_approval(sql, run_id)
    post_linear(client, "linear_comment_approve")
    again = post_linear(client, "linear_comment_approve")
    assert again.json()["changed"] is False
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'approved'") == 1


def test_a_decision_by_someone_who_is_not_an_approver_is_refused_and_recorded(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    from foundry import wiring
    from foundry.web.app import create_app

    settings = make_settings(approvals={"approvers": []})
    with TestClient(create_app(wiring.build(settings))) as client:
        run_id = open_eng_42(client)
        _await_approval(sql, run_id)
        response = post_linear(client, "linear_comment_approve")
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "awaiting_approval"
    assert sql(f"SELECT kind FROM run_events WHERE run_id = '{run_id}' AND seq = 2") == "decision_refused"
    assert sql("SELECT verdict FROM webhook_deliveries WHERE event = 'Comment.create'") == "refused"


@pytest.mark.parametrize(
    "name",
    [
        "linear_issue_create_labeled",
        "linear_issue_update_label_added",
        "linear_comment_start",
        "linear_agent_session_created",
        "linear_issue_update_title_only",
    ],
)
def test_a_redelivery_answers_duplicate_with_no_other_effect(
    client: TestClient, sql: Callable[[str], Any], name: str
) -> None:
    first = post_linear(client, name, delivery="delivery-1")
    before = (sql("SELECT count(*) FROM foundry_runs"), sql("SELECT count(*) FROM run_events"))
    for _ in range(3):
        again = post_linear(client, name, delivery="delivery-1")
        assert again.status_code == 200
        assert again.json() == {"outcome": "duplicate", "run_id": first.json().get("run_id")}
    assert (sql("SELECT count(*) FROM foundry_runs"), sql("SELECT count(*) FROM run_events")) == before
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1


def test_a_redelivered_open_stays_a_duplicate_after_its_run_ended(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    run_id = post_linear(client, "linear_issue_create_labeled", delivery="d-open").json()["run_id"]
    post_linear(client, "linear_issue_remove")
    again = post_linear(client, "linear_issue_create_labeled", delivery="d-open")
    assert again.json() == {"outcome": "duplicate", "run_id": run_id}
    assert sql("SELECT count(*) FROM foundry_runs") == 1


def test_events_from_bot_actors_are_ignored(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    from foundry import wiring
    from foundry.web.app import create_app

    settings = make_settings(triggers={"bot_actor_ids": ["2c9e4a7f-8b1d-4c3e-a6f5-0d2b9e7c1a84"]})
    with TestClient(create_app(wiring.build(settings))) as client:
        response = post_linear(client, "linear_issue_create_labeled")
    assert response.json()["ignored"] == "event from a bot actor"
    assert sql("SELECT count(*) FROM foundry_runs") == 0


def test_the_runaway_guard_caps_runs_per_issue_per_day(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    from foundry import wiring
    from foundry.web.app import create_app

    settings = make_settings(runs={"max_per_issue_per_day": 2})
    with TestClient(create_app(wiring.build(settings))) as client:
        outcomes = []
        for _ in range(3):
            outcomes.append(post_linear(client, "linear_comment_start").json())
            post_linear(client, "linear_issue_remove")
    assert [o.get("outcome") for o in outcomes[:2]] == ["opened", "opened"]
    assert outcomes[2]["ignored"].startswith("runaway guard")
    assert sql("SELECT count(*) FROM foundry_runs") == 2


def test_a_terminal_run_lets_a_new_run_open_for_its_issue(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    first = open_eng_42(client)
    post_linear(client, "linear_issue_remove")
    second = post_linear(client, "linear_comment_start").json()
    assert second["outcome"] == "opened"
    assert second["run_id"] != first
    assert sql(ACTIVE_ENG_42) == 1
