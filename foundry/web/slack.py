"""`POST /webhooks/slack`: a decision button click, verified, decided, answered `200` within 3 s."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from foundry.errors import Unauthorized
from foundry.inbound import signatures, slack
from foundry.services import delivery
from foundry.services.intake import Delivery
from foundry.web import answers, context, refusals
from foundry.web.body import webhook_body

# Slack's documented replay window for X-Slack-Request-Timestamp, both ways (Slack does not
# retry interactivity, so nothing needs a longer one).
TOLERANCE_S = 300
# Digits in a Unix time in seconds for the next few thousand years; more is no timestamp.
MAX_TIMESTAMP_DIGITS = 12


async def receive(request: Request) -> Response:
    async with refusals.guarded(request, "slack") as guard:
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
        if not _fresh(timestamp or "", round(now.timestamp() * 1000)):
            raise guard.stale("The X-Slack-Request-Timestamp is outside the allowed window.")
        intent = slack.to_intent(interaction)
        action = interaction.actions[0].action_id if interaction.actions else "none"
        event = f"{interaction.type}.{action}"
        received = Delivery("slack", slack.delivery_key(interaction), event, now, delivery.digest(body))
        return answers.accepted(await foundry.intake.handle(received, intent))


def _fresh(timestamp: str, now_ms: int) -> bool:
    # ASCII digits only ("²" is a digit to str.isdigit), and few enough to be a time at all.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > MAX_TIMESTAMP_DIGITS:
        return False
    return signatures.timestamp_within(
        int(timestamp) * 1000, now_ms, max_age_s=TOLERANCE_S, max_ahead_s=TOLERANCE_S
    )
