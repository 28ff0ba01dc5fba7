"""The agents API: the registry and tokens (operator bearer), and agents' own events (agent bearer)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.errors import Unauthorized
from foundry.inbound import agents as bodies
from foundry.inbound import text
from foundry.services.idempotency import Reply
from foundry.web import api, context
from foundry.web.body import read_capped

BODY_LIMIT = 64 * 1024
# A replay of a token issue must not show the token again: it was shown once, and is not kept.
_NOT_KEPT = "(shown once when issued; Foundry keeps only its hash)"


async def list_agents(request: Request) -> Response:
    api.require_operator(request)
    return JSONResponse({"agents": await context.container(request).agents.listing()})


async def add_agent(request: Request) -> Response:
    api.require_operator(request)
    raw = await read_capped(request, BODY_LIMIT)
    spec = bodies.parse(bodies.NewAgent, raw).spec()
    registry = context.container(request).agents

    async def act() -> Reply:
        return Reply(201, await registry.add(spec))

    return await api.idempotent(request, "agents", raw, act, scope="POST /api/agents")


async def issue_token(request: Request) -> Response:
    api.require_operator(request)
    raw = await read_capped(request, BODY_LIMIT)
    if raw.strip():  # none is needed; one sent is JSON like any other (its Idempotency-Key reads it)
        text.loads(raw)
    name = request.path_params["name"]
    registry = context.container(request).agents

    async def act() -> Reply:
        return Reply(201, await registry.issue_token(name))

    return await api.idempotent(
        request, "tokens", raw, act, scope="POST /api/agents/{name}/tokens", stored=_without_token
    )


async def revoke_tokens(request: Request) -> Response:
    api.require_operator(request)
    return JSONResponse(await context.container(request).agents.revoke(request.path_params["name"]))


async def run_event(request: Request) -> Response:
    """`POST /api/runs/{id}/events`, with the agent's own token."""
    foundry = context.container(request)
    agent = await foundry.agents.authenticate(_bearer(request))
    raw = await read_capped(request, BODY_LIMIT)
    report = bodies.parse(bodies.AgentEvent, raw).report()
    run_id = request.path_params["run_id"]

    async def act() -> Reply:
        return Reply(202, await foundry.agent_events.record(agent, run_id, report))

    return await api.idempotent(
        request, "events", raw, act, scope=f"POST /api/runs/{{id}}/events:{agent['name']}"
    )


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An agent token is required (Authorization: Bearer <token>).")
    return token.strip()


def _without_token(body: Any) -> Any:
    return {**body, "token": _NOT_KEPT} if isinstance(body, dict) and "token" in body else body
