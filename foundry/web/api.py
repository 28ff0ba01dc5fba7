"""The operator API under `/api`, behind the bearer `FOUNDRY_API_TOKEN` (fail closed)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.errors import NotConfigured, Unauthorized
from foundry.web import context


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
    require_operator(request)
    run_id = request.path_params["run_id"]
    return JSONResponse(await context.container(request).runs.show(run_id))
