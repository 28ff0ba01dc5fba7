"""A run's statuses, which are active, and the transitions between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    INTAKE = "intake"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    AGENT_RUNNING = "agent_running"
    PR_OPEN = "pr_open"
    REVIEW_REQUIRED = "review_required"
    NEEDS_CLARIFICATION = "needs_clarification"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    STOPPED = "stopped"
    FAILED = "failed"
    CLOSED = "closed"
    MERGED = "merged"


ACTIVE: tuple[RunStatus, ...] = (
    RunStatus.INTAKE,
    RunStatus.PLANNING,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.APPROVED,
    RunStatus.AGENT_RUNNING,
    RunStatus.PR_OPEN,
    RunStatus.REVIEW_REQUIRED,
)
TERMINAL: tuple[RunStatus, ...] = tuple(s for s in RunStatus if s not in ACTIVE)

# Every active status may be stopped; the rest of the graph is the happy path plus its exits.
_FORWARD: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.INTAKE: frozenset({RunStatus.PLANNING}),
    RunStatus.PLANNING: frozenset(
        {RunStatus.AWAITING_APPROVAL, RunStatus.NEEDS_CLARIFICATION, RunStatus.BLOCKED}
    ),
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.APPROVED, RunStatus.REJECTED}),
    RunStatus.APPROVED: frozenset({RunStatus.AGENT_RUNNING, RunStatus.FAILED}),
    RunStatus.AGENT_RUNNING: frozenset({RunStatus.PR_OPEN, RunStatus.FAILED}),
    RunStatus.PR_OPEN: frozenset(
        {
            RunStatus.REVIEW_REQUIRED,
            RunStatus.AGENT_RUNNING,
            RunStatus.BLOCKED,
            RunStatus.CLOSED,
            RunStatus.MERGED,
        }
    ),
    RunStatus.REVIEW_REQUIRED: frozenset(
        {
            RunStatus.PR_OPEN,
            RunStatus.AGENT_RUNNING,
            RunStatus.BLOCKED,
            RunStatus.CLOSED,
            RunStatus.MERGED,
        }
    ),
}


def is_active(status: str) -> bool:
    return status in ACTIVE


def may_transition(current: str, new: str) -> bool:
    """Whether `current → new` is an edge of the run graph (stopping any active run is)."""
    if current not in ACTIVE:
        return False
    if new == RunStatus.STOPPED:
        return True
    return RunStatus(new) in _FORWARD[RunStatus(current)]
