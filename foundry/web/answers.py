"""What a receiver answers for an accepted delivery: `200`, with a body that says what happened.

Every accepted delivery — an effect, a duplicate, an ignored event — is answered `200`: Linear
counts any other status as a failed delivery (and retries it), and Slack shows the clicker an
error for anything but `200 OK`. The body carries the outcome.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from foundry.services.intake import IntakeResult


def accepted(result: IntakeResult) -> JSONResponse:
    return JSONResponse(outcome(result))


def outcome(result: IntakeResult) -> dict[str, Any]:
    if result.outcome == "ignored":
        return {"ignored": result.reason, "run_id": result.run_id}
    body: dict[str, Any] = {"outcome": result.outcome, "run_id": result.run_id}
    if result.outcome == "duplicate":
        return body
    if result.changed is not None:
        body["changed"] = result.changed
    if result.reason:
        body["reason"] = result.reason
    return body
