"""The operator API under `/api`, behind the bearer `FOUNDRY_API_TOKEN` (fail closed)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.domain.triggers import Decision
from foundry.errors import BadRequest, NotConfigured, Unauthorized
from foundry.inbound import text
from foundry.services import idempotency
from foundry.services.idempotency import Action, Redact, Reply
from foundry.web import context
from foundry.web.body import read_capped


def require_operator(request: Request) -> None:
    token = context.container(request).settings.api_token
    if token is None:
        raise NotConfigured("The operator API is disabled: set FOUNDRY_API_TOKEN.")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        raise Unauthorized("A valid bearer token is required.")


async def list_runs(request: Request) -> Response:
    require_operator(request)
    return JSONResponse(await context.container(request).runs.list(request.query_params))


async def show_run(request: Request) -> Response:
    """One view of a run (`services.runs`), by id or by the short id `runs list` prints."""
    require_operator(request)
    run_id = request.path_params["run_id"]
    return JSONResponse(await context.container(request).runs.show(run_id))


# Operator actions: small JSON bodies (an optional "actor"); anything larger is a mistake.
ACTION_BODY_LIMIT = 64 * 1024
# The actor is recorded in `run_events.actor`.
MAX_ACTOR = 255


async def approve(request: Request) -> Response:
    return await _decision(request, Decision.APPROVE)


async def reject(request: Request) -> Response:
    return await _decision(request, Decision.REJECT)


async def stop(request: Request) -> Response:
    return await _decision(request, Decision.STOP)


async def retry(request: Request) -> Response:
    require_operator(request)
    run_id, raw, actor = await _action_input(request)
    foundry = context.container(request)

    async def act() -> Reply:
        return Reply(201, await foundry.operator.retry(run_id, actor))

    return await idempotent(request, "retry", raw, act)


async def _decision(request: Request, decision: Decision) -> Response:
    require_operator(request)
    run_id, raw, actor = await _action_input(request)
    foundry = context.container(request)

    async def act() -> Reply:
        return Reply(200, await foundry.operator.decide(run_id, decision, actor))

    return await idempotent(request, decision.value, raw, act)


async def _action_input(request: Request) -> tuple[str, bytes, str]:
    raw = await read_capped(request, ACTION_BODY_LIMIT)
    actor = "operator"
    if raw.strip():
        body = text.loads(raw)
        if not isinstance(body, dict) or not isinstance(body.get("actor", actor), str):
            raise BadRequest('The body must be a JSON object like {"actor": "name"}.')
        actor = body.get("actor") or actor
        if len(actor) > MAX_ACTOR:
            raise BadRequest(f"The actor is longer than {MAX_ACTOR} characters.")
    return request.path_params["run_id"], raw, actor


async def idempotent(
    request: Request,
    action: str,
    raw: bytes,
    act: Action,
    *,
    scope: str | None = None,
    stored: Redact | None = None,
) -> Response:
    """Run `act` once per Idempotency-Key (when given) and answer what it answered."""
    key = request.headers.get("idempotency-key")
    if key is None:
        reply = await act()
    else:
        if not 0 < len(key) <= 255:
            raise BadRequest("The Idempotency-Key must be 1 to 255 characters.")
        scope = scope or f"POST /api/runs/{{id}}/{action}"
        print_ = idempotency.fingerprint(request.method, request.url.path, raw)
        reply = await context.container(request).idempotency.execute(scope, key, print_, act, stored=stored)
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)
