"""`POST /webhooks/linear`: verify, parse, decide, hand to intake, answer."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from foundry.domain import triggers
from foundry.errors import BadRequest, Unauthorized
from foundry.inbound import linear, signatures
from foundry.services import delivery
from foundry.services.intake import Delivery
from foundry.web import answers, context, refusals
from foundry.web.body import webhook_body


async def receive(request: Request) -> Response:
    async with refusals.guarded(request, "linear") as guard:
        foundry = context.container(request)
        settings = foundry.settings
        secret, body = await webhook_body(
            request, settings.linear_webhook_secret, "FOUNDRY_LINEAR_WEBHOOK_SECRET", "Linear webhooks are"
        )
        if not signatures.linear_valid(secret, body, request.headers.get("linear-signature")):
            raise Unauthorized("The Linear-Signature header does not match the body.")
        envelope = linear.parse(body)
        now = context.now(request)
        # Linear retries a failed delivery with the same signed bytes (+1 min, +1 h, +6 h): the
        # window covers that horizon, and the body's digest makes any replay within it a duplicate.
        if not signatures.timestamp_within(
            envelope.webhook_timestamp,
            _ms(now),
            max_age_s=settings.webhooks.linear_max_age_s,
            max_ahead_s=settings.webhooks.tolerance_s,
        ):
            raise guard.stale("The webhookTimestamp is outside the allowed window.")
        happened = linear.to_event(envelope)
        event = f"{envelope.type}.{envelope.action}"
        received = Delivery("linear", _delivery_key(request), event, now, delivery.digest(body))
        # Only now, with the delivery found sound: bad input writes nothing. Foundry's own app user
        # needs no `bot_actor_ids` entry, as its id is learned (and its events known as its own).
        identity = foundry.app_identity
        await identity.observe(envelope.app_user_id)
        rules = replace(settings.triggers.rules(), own_ids=await identity.own_ids())
        return answers.accepted(await foundry.intake.handle(received, triggers.decide(happened, rules)))


def _delivery_key(request: Request) -> str:
    """`Linear-Delivery`, never the body's `webhookId` (the webhook's constant id)."""
    key = request.headers.get("linear-delivery", "").strip()
    if not key:
        raise BadRequest("The Linear-Delivery header is missing.")
    if len(key) > 255:
        raise BadRequest("The Linear-Delivery header is longer than 255 characters.")
    return key


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
