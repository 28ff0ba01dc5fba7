"""`GET /api/deliveries`: recent inbound deliveries and their verdicts, for the operator."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.web import api, context


async def list_deliveries(request: Request) -> Response:
    api.require_operator(request)
    return JSONResponse(await context.container(request).deliveries.list(request.query_params))
