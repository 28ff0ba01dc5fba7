"""The trigger rules, as pure functions of a parsed delivery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundry.domain import triggers
from foundry.domain.triggers import Decide, Decision, Ignore, OpenRun, StopRun
from foundry.inbound import linear

FIXTURES = Path(__file__).parents[1] / "fixtures"
RULES = triggers.TriggerRules()


def intent_for(name: str, rules: triggers.TriggerRules = RULES) -> triggers.Intent:
    envelope = linear.parse((FIXTURES / f"{name}.json").read_bytes())
    return triggers.decide(linear.to_event(envelope), rules)


@pytest.mark.parametrize(
    ("name", "trigger"),
    [
        ("linear_issue_create_labeled", "label"),
        ("linear_issue_create_no_criteria", "label"),
        ("linear_issue_update_label_added", "label"),
        ("linear_comment_start", "comment"),
        ("linear_agent_session_created", "agent_session"),
    ],
)
def test_opening_routes(name: str, trigger: str) -> None:
    intent = intent_for(name)
    assert isinstance(intent, OpenRun)
    assert intent.trigger == trigger


def test_the_label_is_matched_by_name_and_its_id_remembered() -> None:
    intent = intent_for("linear_issue_create_labeled")
    assert isinstance(intent, OpenRun)
    assert intent.label_id == "c3a1e7d2-6b4f-4a8e-9d2c-7e1f0a5b9c33"
    assert intent.issue.identifier == "ENG-42"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("linear_issue_update_label_removed", "trigger label removed"),
        ("linear_issue_update_canceled", "issue canceled"),
        ("linear_issue_remove", "issue deleted"),
    ],
)
def test_stopping_routes(name: str, reason: str) -> None:
    intent = intent_for(name)
    assert isinstance(intent, StopRun)
    assert intent.reason == reason


def test_an_issue_moved_to_a_completed_state_stops_only_a_run_without_its_pr() -> None:
    """Linear's GitHub integration moves an issue to Done when its PR merges, and that update may
    arrive before the PR's own webhook: a run that has its PR is left to it."""
    body = json.loads((FIXTURES / "linear_issue_update_canceled.json").read_text())
    body["data"]["state"] = {**body["data"]["state"], "type": "completed", "name": "Done"}
    intent = triggers.decide(linear.to_event(linear.parse(json.dumps(body).encode())), RULES)
    assert isinstance(intent, StopRun)
    assert (intent.reason, intent.spare_with_pr, intent.tracker) == ("issue completed", True, "linear")


def test_a_removed_label_other_than_the_configured_id_is_ignored() -> None:
    rules = triggers.TriggerRules(label_id="some-other-label")
    assert isinstance(intent_for("linear_issue_update_label_removed", rules), Ignore)


def test_a_title_edit_is_ignored() -> None:
    assert intent_for("linear_issue_update_title_only") == Ignore(
        "issue update does not change the trigger label"
    )


@pytest.mark.parametrize(
    ("name", "decision", "note"),
    [
        ("linear_comment_approve", Decision.APPROVE, ""),
        ("linear_comment_reject", Decision.REJECT, "scope is too large"),
    ],
)
def test_decision_comments(name: str, decision: Decision, note: str) -> None:
    intent = intent_for(name)
    assert isinstance(intent, Decide)
    assert (intent.decision, intent.note, intent.actor.email) == (decision, note, "lead@example.com")


def test_a_prompt_is_added() -> None:
    intent = intent_for("linear_agent_session_prompted")
    assert isinstance(intent, triggers.AddPrompt)
    assert intent.prompt == "Please also cover the mobile client."


def test_another_label_name_does_not_trigger() -> None:
    assert isinstance(intent_for("linear_issue_create_labeled", triggers.TriggerRules(label="robot")), Ignore)


def test_bot_actors_are_ignored_whatever_they_do() -> None:
    rules = triggers.TriggerRules(bot_actor_ids=frozenset({"2c9e4a7f-8b1d-4c3e-a6f5-0d2b9e7c1a84"}))
    assert intent_for("linear_comment_start", rules) == Ignore("event from a bot actor")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/foundry start", "start"),
        ("  /Foundry   STOP now", "stop"),
        ("please /foundry start", None),
        ("/foundry deploy", "unknown"),
        ("no command", None),
    ],
)
def test_comment_commands_must_start_a_line(body: str, expected: str | None) -> None:
    raw = json.loads((FIXTURES / "linear_comment_start.json").read_text())
    raw["data"]["body"] = body
    intent = triggers.decide(linear.to_event(linear.parse(json.dumps(raw).encode())), RULES)
    if expected == "start":
        assert isinstance(intent, OpenRun)
    elif expected == "stop":
        assert isinstance(intent, Decide) and intent.decision is Decision.STOP
    elif expected == "unknown":
        assert intent == Ignore("unknown command /foundry deploy")
    else:
        assert intent == Ignore("comment has no /foundry command")
