"""`POST /webhooks/github`: verify, dedup by hook id + delivery GUID or by digest; follow the PR,
or — for `issues` and `issue_comment` — hand the issue's event to intake, as Linear's route does."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from foundry.domain import effects, events, triggers
from foundry.errors import BadRequest, Unauthorized
from foundry.inbound import github, github_issues, signatures
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
        event, key = _event_and_key(request)
        if event in github_issues.EVENTS:
            return answers.accepted(await _issue_event(request, event, key, body))
        payload = github.parse(body)
        intent = github.to_intent(event, payload)
        name = f"{event}.{payload.action}" if payload.action else event
        # The GUID is not signed: the body's digest is what makes a replay under a new one a duplicate.
        received = Delivery("github", key, name, context.now(request), delivery.digest(body))
        return answers.accepted(await foundry.pulls.handle(received, intent))


async def _issue_event(request: Request, event: str, key: str, body: bytes) -> delivery.Result:
    foundry = context.container(request)
    parsed = github_issues.parse(event, body)
    happened = parsed.event
    name = f"{event}.{parsed.action}" if parsed.action else event
    received = Delivery("github", key, name, context.now(request), delivery.digest(body))
    if isinstance(happened, events.CommentEvent) and effects.marked_key(happened.body) is not None:
        # Foundry's own comments carry its marker; one quoting a command must not act on it.
        intent: triggers.Intent = triggers.Ignore("comment written by Foundry")
    else:
        intent = triggers.decide(happened, foundry.settings.triggers.github_rules())
    return await foundry.intake.handle(received, intent)


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
