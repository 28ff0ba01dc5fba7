"""`GET /metrics`: Prometheus text, unauthenticated (scrapers carry no token) and read-only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from foundry.services import metrics
from foundry.web import context


async def scrape(request: Request) -> Response:
    text = await context.container(request).metrics.scrape(context.now(request))
    return Response(text, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})
