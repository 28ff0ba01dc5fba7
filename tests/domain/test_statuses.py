"""Statuses: which are active, and which edges the run graph has."""

from __future__ import annotations

from foundry.domain import names, statuses
from foundry.domain.statuses import RunStatus


def test_active_and_terminal_partition_the_statuses() -> None:
    assert set(statuses.ACTIVE) | set(statuses.TERMINAL) == set(RunStatus)
    assert not set(statuses.ACTIVE) & set(statuses.TERMINAL)
    assert [s.value for s in statuses.ACTIVE] == [
        "intake",
        "planning",
        "awaiting_approval",
        "approved",
        "agent_running",
        "pr_open",
        "review_required",
    ]


def test_any_active_run_may_stop_and_no_terminal_run_moves() -> None:
    assert all(statuses.may_transition(s, RunStatus.STOPPED) for s in statuses.ACTIVE)
    assert not any(statuses.may_transition(s, RunStatus.PLANNING) for s in statuses.TERMINAL)
    assert statuses.may_transition(RunStatus.PR_OPEN, RunStatus.REVIEW_REQUIRED)
    assert statuses.may_transition(RunStatus.REVIEW_REQUIRED, RunStatus.PR_OPEN)
    assert not statuses.may_transition(RunStatus.INTAKE, RunStatus.APPROVED)


def test_branch_names_carry_the_identifier_and_the_run_short_id() -> None:
    run_id = "0f3a9c2e-1b2c-4d5e-8f90-123456789abc"
    assert names.short_id(run_id) == "0f3a9c2e"
    assert names.branch_name("ENG-42", run_id) == "foundry/eng-42-0f3a9c2e"
