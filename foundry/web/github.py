"""`POST /webhooks/github`: verify, dedup by hook id + delivery GUID or by digest, follow the PR."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from foundry.errors import BadRequest, Unauthorized
from foundry.inbound import github, signatures
from foundry.services import delivery
from foundry.services.delivery import Delivery
from foundry.web import answers, context, refusals
from foundry.web.body import webhook_body


async def receive(request: Request) -> Response:
    async with refusals.guarded(request, "github"):
        foundry = context.container(request)
        settings = foundry.settings
        secret, body = await webhook_body(
            request, settings.github_webhook_secret, "FOUNDRY_GITHUB_WEBHOOK_SECRET", "GitHub webhooks are"
        )
        if not signatures.github_valid(secret, body, request.headers.get("x-hub-signature-256")):
            raise Unauthorized("The X-Hub-Signature-256 header does not match the body.")
        payload = github.parse(body)
        event, key = _event_and_key(request)
        intent = github.to_intent(event, payload)
        name = f"{event}.{payload.action}" if payload.action else event
        # The GUID is not signed: the body's digest is what makes a replay under a new one a duplicate.
        received = Delivery("github", key, name, context.now(request), delivery.digest(body))
        return answers.accepted(await foundry.pulls.handle(received, intent))


def _event_and_key(request: Request) -> tuple[str, str]:
    event = request.headers.get("x-github-event", "").strip()
    guid = request.headers.get("x-github-delivery", "").strip()
    if not event or not guid:
        raise BadRequest("The X-GitHub-Event and X-GitHub-Delivery headers are required.")
    # A redelivery reuses the GUID; the hook id keeps two hooks' GUIDs apart.
    key = f"{request.headers.get('x-github-hook-id', '').strip()}:{guid}"
    if len(key) > 255:
        raise BadRequest("The X-GitHub-Hook-ID and X-GitHub-Delivery headers are too long.")
    return event, key
