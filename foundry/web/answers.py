"""How a receiver answers an intake result: the body, and 202 for an effect, 200 otherwise."""

from __future__ import annotations

from typing import Any

from foundry.services.intake import IntakeResult


def outcome(result: IntakeResult) -> tuple[int, dict[str, Any]]:
    if result.outcome == "ignored":
        return 200, {"ignored": result.reason, "run_id": result.run_id}
    body: dict[str, Any] = {"outcome": result.outcome, "run_id": result.run_id}
    if result.outcome == "duplicate":
        return 200, body
    if result.changed is not None:
        body["changed"] = result.changed
    if result.reason:
        body["reason"] = result.reason
    return 202, body
