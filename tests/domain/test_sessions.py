"""Which activity each milestone is in a Linear agent session, and the plan as the run moves."""

from __future__ import annotations

from typing import Any

import pytest

from foundry.domain import sessions

PLAN = {"summary": "Persist filters", "steps": ["Add a table"]}


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        ("session_ack_b7c8", "thought"),
        ("prompt_f4a5", "thought"),
        ("plan_comment", "elicitation"),
        ("clarification", "elicitation"),
        ("needs_person", "elicitation"),
        ("pr_review_required_0123456789ab", "elicitation"),
        ("decision_approved", "action"),
        ("dispatched", "action"),
        ("pr_opened", "action"),
        ("remediate:0123abc:ci_failed", "action"),
        ("merged", "response"),
        ("closed", "error"),
        ("decision_rejected", "error"),
        ("decision_stopped", "error"),
        ("stopped", "error"),
        ("blocked", "error"),
        ("pr_blocked_0123456789ab", "error"),
        ("secret_detected", "error"),
        ("failed", "error"),
        ("dispatch_failed", "error"),
        ("something_new", "thought"),
    ],
)
def test_each_milestone_is_its_activity(step: str, kind: str) -> None:
    assert sessions.kind_of(step).type == kind


def test_only_a_merge_is_a_response() -> None:
    steps = ["plan_comment", "decision_approved", "pr_opened", "closed", "failed", "stopped", "x"]
    assert all(sessions.kind_of(step).type != "response" for step in steps)


def test_an_action_names_what_was_done_and_carries_the_message_as_one_line() -> None:
    content = sessions.content("pr_opened", "**Pull request opened**:\nhttps://github.com/acme/app/pull/318")
    assert content == {
        "type": "action",
        "action": "Opened pull request",
        "parameter": "Pull request opened: https://github.com/acme/app/pull/318",
    }


def test_the_approval_request_says_how_to_approve() -> None:
    content = sessions.content("plan_comment", "The plan")
    assert content["type"] == "elicitation"
    assert content["body"].startswith("The plan") and "/foundry approve" in content["body"]


def run(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, "plan": PLAN, "attempt": 0, "pr_number": None, **fields}


@pytest.mark.parametrize(
    ("status", "fields", "states"),
    [
        ("planning", {"plan": None}, ["inProgress", "pending", "pending", "pending", "pending"]),
        ("awaiting_approval", {}, ["completed", "inProgress", "pending", "pending", "pending"]),
        ("approved", {}, ["completed", "completed", "inProgress", "pending", "pending"]),
        ("agent_running", {"attempt": 1}, ["completed", "completed", "completed", "inProgress", "pending"]),
        ("pr_open", {"attempt": 1, "pr_number": 3}, ["completed"] * 4 + ["inProgress"]),
        ("merged", {"attempt": 1, "pr_number": 3}, ["completed"] * 5),
        ("rejected", {}, ["completed", "canceled", "canceled", "canceled", "canceled"]),
        ("needs_clarification", {"plan": None}, ["canceled"] * 5),
        ("failed", {"attempt": 2}, ["completed", "completed", "completed", "canceled", "canceled"]),
        ("closed", {"attempt": 1, "pr_number": 3}, ["completed"] * 4 + ["canceled"]),
    ],
)
def test_the_plan_follows_the_run(status: str, fields: dict[str, Any], states: list[str]) -> None:
    assert [step["status"] for step in sessions.plan(run(status, **fields))] == states


def test_the_first_step_names_the_plan() -> None:
    assert sessions.plan(run("awaiting_approval"))[0]["content"] == "Plan the change: Persist filters"
