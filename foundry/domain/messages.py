"""Slack Block Kit messages for a run's approval, as plain data."""

from __future__ import annotations

from typing import Any

APPROVE, REJECT, STOP = "foundry_approve", "foundry_reject", "foundry_stop"
DECISION_BLOCK = "foundry_decision"


def approval_request(
    run_id: str, identifier: str, title: str, summary: str, roles: tuple[str, ...]
) -> tuple[str, list[dict[str, Any]]]:
    """Text and blocks asking for a decision: Approve / Reject / Stop, each valued the run id."""
    text = f"{identifier} needs approval: {title}"
    detail = f"*{text}*\n{summary}"
    if roles:
        detail += "\nNeeds an approver with: " + ", ".join(roles)
    buttons = [
        _button("Approve", APPROVE, run_id, "primary"),
        _button("Reject", REJECT, run_id, "danger"),
        _button("Stop", STOP, run_id, None),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
        {"type": "actions", "block_id": DECISION_BLOCK, "elements": buttons},
    ]
    return text, blocks


def decision_made(identifier: str, title: str, outcome: str, actor: str) -> tuple[str, list[dict[str, Any]]]:
    """The same message after the decision: no buttons left to click."""
    text = f"{identifier} {outcome} by {actor}: {title}"
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]


def _button(label: str, action_id: str, run_id: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": run_id,
    }
    if style:
        button["style"] = style
    return button
