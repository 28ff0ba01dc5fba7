"""`/healthz` (the process is up) and `/readyz` (the database answers, schema at head)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry.web import context


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    await context.container(request).runs.ready()
    return JSONResponse({"status": "ready"})
