"""`POST /webhooks/slack`: a decision button click, verified, decided, answered within 3 s.

Slack requires `200 OK` to acknowledge an interaction (anything else shows the clicker an
error), so effects answer 200 here where the other receivers answer 202; the body is the same.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.errors import Unauthorized
from foundry.inbound import signatures, slack
from foundry.services.intake import Delivery
from foundry.web import answers, context
from foundry.web.body import webhook_body

# Slack's documented replay window for X-Slack-Request-Timestamp.
TOLERANCE_S = 300


async def receive(request: Request) -> Response:
    foundry = context.container(request)
    settings = foundry.settings
    secret, body = await webhook_body(
        request, settings.slack_signing_secret, "FOUNDRY_SLACK_SIGNING_SECRET", "Slack interactivity is"
    )
    timestamp = request.headers.get("x-slack-request-timestamp")
    if not signatures.slack_valid(secret, body, timestamp, request.headers.get("x-slack-signature")):
        raise Unauthorized("The X-Slack-Signature header does not match the body.")
    interaction = slack.parse(body)
    now = context.now(request)
    assert timestamp is not None
    numeric = timestamp.isascii() and timestamp.isdigit()  # "²" is a digit to str.isdigit
    if not numeric or not signatures.timestamp_fresh(float(timestamp), now.timestamp(), TOLERANCE_S):
        raise Unauthorized("The X-Slack-Request-Timestamp is outside the allowed window.")
    intent = slack.to_intent(interaction)
    action = interaction.actions[0].action_id if interaction.actions else "none"
    delivery = Delivery("slack", slack.delivery_key(interaction), f"{interaction.type}.{action}", now)
    _, answer = answers.outcome(await foundry.intake.handle(delivery, intent))
    return JSONResponse(answer)
