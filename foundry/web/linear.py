"""`POST /webhooks/linear`: verify, parse, decide, hand to intake, answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.domain import triggers
from foundry.errors import BadRequest, Unauthorized
from foundry.inbound import linear, signatures
from foundry.services.intake import Delivery
from foundry.web import answers, context
from foundry.web.body import webhook_body


async def receive(request: Request) -> Response:
    foundry = context.container(request)
    settings = foundry.settings
    secret, body = await webhook_body(
        request, settings.linear_webhook_secret, "FOUNDRY_LINEAR_WEBHOOK_SECRET", "Linear webhooks are"
    )
    if not signatures.linear_valid(secret, body, request.headers.get("linear-signature")):
        raise Unauthorized("The Linear-Signature header does not match the body.")
    envelope = linear.parse(body)
    now = context.now(request)
    sent_at = envelope.webhook_timestamp / 1000
    if not signatures.timestamp_fresh(sent_at, now.timestamp(), settings.webhooks.tolerance_s):
        raise Unauthorized("The webhookTimestamp is outside the allowed window.")
    delivery_key = request.headers.get("linear-delivery", "").strip()
    if not delivery_key:
        raise BadRequest("The Linear-Delivery header is missing.")
    if len(delivery_key) > 255:
        raise BadRequest("The Linear-Delivery header is longer than 255 characters.")
    intent = triggers.decide(linear.to_event(envelope), settings.triggers.rules())
    delivery = Delivery("linear", delivery_key, f"{envelope.type}.{envelope.action}", now)
    status, answer = answers.outcome(await foundry.intake.handle(delivery, intent))
    return JSONResponse(answer, status_code=status)
