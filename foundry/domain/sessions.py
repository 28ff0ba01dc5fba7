"""What a run says in its Linear agent session: which activity each milestone is, and the plan.

Linear keeps a session's state from its last activity: an `elicitation` waits for a person, an
`error` or a `response` ends the session (a `response` as done). So a milestone that needs a
person is an `elicitation`, a step Foundry took is an `action`, an ending other than a merge is
an `error`, only the merge is the one `response`, and anything not named here is a `thought` —
an interim update is never a `response`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foundry.domain.statuses import RunStatus

THOUGHT, ACTION, ELICITATION, RESPONSE, ERROR = "thought", "action", "elicitation", "response", "error"


@dataclass(frozen=True)
class Kind:
    type: str
    # For an `action`: what was done (Linear shows it as the action's name).
    action: str = ""


# By effect step, exactly or (for steps carrying a commit or reason) by prefix.
_BY_STEP: dict[str, Kind] = {
    "plan_comment": Kind(ELICITATION),
    "clarification": Kind(ELICITATION),
    "needs_person": Kind(ELICITATION),
    "repository_question": Kind(ELICITATION),
    "decision_approved": Kind(ACTION, "Approved"),
    "dispatched": Kind(ACTION, "Dispatched to the coding agent"),
    "pr_opened": Kind(ACTION, "Opened pull request"),
    "merged": Kind(RESPONSE),
    "closed": Kind(ERROR),
    "decision_rejected": Kind(ERROR),
    "decision_stopped": Kind(ERROR),
    "stopped": Kind(ERROR),
    "blocked": Kind(ERROR),
    "secret_detected": Kind(ERROR),
    "failed": Kind(ERROR),
    "dispatch_failed": Kind(ERROR),
}
_BY_PREFIX: tuple[tuple[str, Kind], ...] = (
    ("session_ack_", Kind(THOUGHT)),
    ("prompt_", Kind(THOUGHT)),
    ("remediate:", Kind(ACTION, "Sent back to the agent")),
    ("pr_blocked_", Kind(ERROR)),
    ("pr_review_required_", Kind(ELICITATION)),
)

# How to approve, told wherever the session asks for it.
HOW_TO_APPROVE = (
    "To approve, an approver clicks **Approve** in Slack, comments `/foundry approve` on the issue, "
    "or replies `approve` here (`reject` to turn it down)."
)


def kind_of(step: str) -> Kind:
    """The activity a milestone is in the session (a thought when it is none of the named ones)."""
    found = _BY_STEP.get(step)
    if found is not None:
        return found
    return next((kind for prefix, kind in _BY_PREFIX if step.startswith(prefix)), Kind(THOUGHT))


def content(step: str, body: str) -> dict[str, Any]:
    """The activity's `content` for a milestone whose comment would have said `body`."""
    kind = kind_of(step)
    if kind.type == ACTION:
        return {"type": ACTION, "action": kind.action, "parameter": _plain(body)}
    if step == "plan_comment":
        body = f"{body}\n\n{HOW_TO_APPROVE}"
    return {"type": kind.type, "body": body}


def _plain(body: str) -> str:
    """One line for an action's parameter: no bold markers, no line breaks."""
    return re.sub(r"\s+", " ", body.replace("**", "")).strip()


# The run's course, as the session's plan: each step's status follows the run.
STAGES = (
    "Plan the change",
    "Get approval",
    "Dispatch to the coding agent",
    "Open the pull request",
    "Review and merge",
)
_STAGE_OF_STATUS: dict[RunStatus, int] = {
    RunStatus.INTAKE: 0,
    RunStatus.PLANNING: 0,
    RunStatus.AWAITING_APPROVAL: 1,
    RunStatus.APPROVED: 2,
    RunStatus.AGENT_RUNNING: 3,
    RunStatus.PR_OPEN: 4,
    RunStatus.REVIEW_REQUIRED: 4,
}


def plan(run: Mapping[str, Any]) -> list[dict[str, str]]:
    """The session's plan for the run as it is now: done stages `completed`, the current one
    `inProgress`, the rest `pending`; a run that ended short of a merge cancels what is left."""
    status = str(run["status"])
    summary = (run.get("plan") or {}).get("summary") if isinstance(run.get("plan"), dict) else None
    names = [f"{STAGES[0]}: {summary}" if summary else STAGES[0], *STAGES[1:]]
    if status == RunStatus.MERGED:
        return [{"content": name, "status": "completed"} for name in names]
    current = _STAGE_OF_STATUS.get(RunStatus(status))
    ended = current is None
    reached = _reached(run) if current is None else current
    steps = []
    for index, name in enumerate(names):
        if index < reached:
            state = "completed"
        elif index == reached:
            state = "canceled" if ended else "inProgress"
        else:
            state = "canceled" if ended else "pending"
        steps.append({"content": name, "status": state})
    return steps


def _reached(run: Mapping[str, Any]) -> int:
    """How far an ended run got: the stage it ended in, read from what it holds."""
    if run.get("pr_number") is not None:
        return 4
    if int(run.get("attempt") or 0) > 0:
        return 3
    if run["status"] == RunStatus.REJECTED or run.get("plan") is not None:
        return 1
    return 0
