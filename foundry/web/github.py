"""`POST /webhooks/github`: verify, dedup by hook id + delivery GUID, follow the pull request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.errors import BadRequest, Unauthorized
from foundry.inbound import github, signatures
from foundry.services.delivery import Delivery
from foundry.web import answers, context
from foundry.web.body import webhook_body


async def receive(request: Request) -> Response:
    foundry = context.container(request)
    settings = foundry.settings
    secret, body = await webhook_body(
        request, settings.github_webhook_secret, "FOUNDRY_GITHUB_WEBHOOK_SECRET", "GitHub webhooks are"
    )
    if not signatures.github_valid(secret, body, request.headers.get("x-hub-signature-256")):
        raise Unauthorized("The X-Hub-Signature-256 header does not match the body.")
    payload = github.parse(body)
    event = request.headers.get("x-github-event", "").strip()
    guid = request.headers.get("x-github-delivery", "").strip()
    if not event or not guid:
        raise BadRequest("The X-GitHub-Event and X-GitHub-Delivery headers are required.")
    # A redelivery reuses the GUID; the hook id keeps two hooks' GUIDs apart.
    key = f"{request.headers.get('x-github-hook-id', '').strip()}:{guid}"
    if len(key) > 255:
        raise BadRequest("The X-GitHub-Hook-ID and X-GitHub-Delivery headers are too long.")
    intent = github.to_intent(event, payload)
    delivery = Delivery(
        "github", key, f"{event}.{payload.action}" if payload.action else event, context.now(request)
    )
    status, answer = answers.outcome(await foundry.pulls.handle(delivery, intent))
    return JSONResponse(answer, status_code=status)
