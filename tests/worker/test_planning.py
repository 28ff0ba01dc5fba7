"""Planning: readiness, plan, policy gate — and the effects each outcome writes to the outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from foundry.clients.errors import OutboundError
from foundry.db import database, outbox, runs
from foundry.domain import effects, policy
from foundry.domain.plans import IssueForPlanning, Plan
from tests.worker.conftest import status


def outbox_of(db: database.Database, run_id: str) -> dict[str, Any]:
    rows = db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
    return {row["effect_key"].split(":")[2]: row for row in rows}


def kinds(db: database.Database, run_id: str) -> list[str]:
    return [e["kind"] for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id))]


def test_nothing_to_plan_is_zero(make_planning: Callable[..., Any]) -> None:
    assert make_planning().plan_once() == 0


def test_a_ready_issue_is_planned_and_asks_for_approval_on_linear_and_slack(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run()
    assert make_planning().plan_once() == 1
    run = status(db, run_id)
    assert run["status"] == "awaiting_approval"
    assert run["plan"]["backend"] == "template"
    assert run["plan"]["criteria"] == ["Filters persist", "Filters can be renamed"]
    assert run["lease_owner"] is None  # released for whoever acts next
    assert kinds(db, run_id) == ["opened", "planning", "planned"]
    sent = outbox_of(db, run_id)
    assert set(sent) == {"plan_comment", "slack_approval"}
    comment = sent["plan_comment"]["payload"]
    assert comment["comment_id"] == effects.linear_comment_id(effects.key(run_id, "plan_comment"))
    assert "Filters persist" in comment["body"]
    buttons = sent["slack_approval"]["payload"]["blocks"][1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("foundry_approve", run_id),
        ("foundry_reject", run_id),
        ("foundry_stop", run_id),
    ]


def test_without_a_slack_channel_only_linear_is_asked(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run()
    make_planning(channel=None).plan_once()
    assert set(outbox_of(db, run_id)) == {"plan_comment"}


def test_an_issue_without_acceptance_criteria_needs_clarification_with_drafted_criteria(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run(description="Export is slow.", title="Make the export button faster")
    make_planning().plan_once()
    assert status(db, run_id)["status"] == "needs_clarification"
    sent = outbox_of(db, run_id)
    assert set(sent) == {"clarification"}
    body = sent["clarification"]["payload"]["body"]
    assert "## Acceptance criteria" in body and "Make the export button faster" in body


def test_a_plan_touching_a_forbidden_path_is_blocked(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run(description=CRITERIA_WITH_PATHS)
    make_planning(rules=policy.Policy(forbidden_globs=(".github/workflows/**",))).plan_once()
    run = status(db, run_id)
    assert run["status"] == "blocked"
    assert set(outbox_of(db, run_id)) == {"blocked"}
    assert "`.github/workflows/ci.yml`" in outbox_of(db, run_id)["blocked"]["payload"]["body"]


def test_a_sensitive_area_sets_the_roles_an_approval_needs(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run(description=CRITERIA_WITH_PATHS)
    billing = policy.SensitiveArea(("billing/**",), "billing-owner")
    make_planning(rules=policy.Policy(sensitive={"billing": billing})).plan_once()
    run = status(db, run_id)
    assert run["status"] == "awaiting_approval"
    assert run["required_roles"] == ["billing-owner"]


CRITERIA_WITH_PATHS = (
    "Touches `billing/invoices.py` and `.github/workflows/ci.yml`.\n\n## Acceptance criteria\n- Works\n"
)


class FailingModel:
    def plan(self, issue: IssueForPlanning) -> Plan:
        raise OutboundError("anthropic", "HTTP 529", retryable=True)


class FixedModel:
    def plan(self, issue: IssueForPlanning) -> Plan:
        return Plan("Model plan", ("do it",), ("src/filters.py",), issue.criteria, "anthropic")


def test_a_failing_model_falls_back_to_the_template_and_says_so(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run()
    make_planning(model=FailingModel()).plan_once()
    run = status(db, run_id)
    assert run["status"] == "awaiting_approval"
    assert run["plan"]["backend"] == "template"
    planned = db.transaction_sync(lambda tx: runs.timeline(tx, run_id))[-1]
    assert "model planner failed" in planned["data"]["notes"][0]


def test_a_working_model_plans(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    run_id = open_run()
    make_planning(model=FixedModel()).plan_once()
    assert status(db, run_id)["plan"]["paths"] == ["src/filters.py"]


def test_each_run_is_planned_once_across_workers(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    ids = [open_run() for _ in range(3)]
    a, b = make_planning(owner="a"), make_planning(owner="b")
    assert [a.plan_once(), b.plan_once(), a.plan_once(), b.plan_once()] == [1, 1, 1, 0]
    assert all(status(db, run_id)["status"] == "awaiting_approval" for run_id in ids)
    assert all(kinds(db, run_id).count("planned") == 1 for run_id in ids)


class FakeLinear:
    def __init__(self, description: str) -> None:
        self.description = description
        self.asked: list[str] = []

    def issue(self, issue_id: str) -> dict[str, Any]:
        self.asked.append(issue_id)
        return {"id": issue_id, "description": self.description}


def test_a_run_opened_by_comment_reads_its_description_from_linear(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any]
) -> None:
    from tests.worker.conftest import CRITERIA

    run_id = open_run(description=None, issue="issue-from-comment")
    linear = FakeLinear(CRITERIA)
    make_planning(linear=linear).plan_once()
    assert linear.asked == ["issue-from-comment"]
    run = status(db, run_id)
    assert run["status"] == "awaiting_approval"
    assert run["description"] == CRITERIA
