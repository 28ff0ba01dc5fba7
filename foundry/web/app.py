"""The ASGI application: routes, error mapping, and the database's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.routing import Route

from foundry import logs, wiring
from foundry import settings as settings_module
from foundry.web import (
    agents,
    api,
    deliveries,
    errors,
    github,
    health,
    linear,
    metrics,
    openapi,
    pages,
    slack,
)


def create_app(container: wiring.Container, *, clock: Callable[[], datetime] | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await container.db.open()
        try:
            yield
        finally:
            await container.db.close()

    app = Starlette(
        routes=[
            Route("/webhooks/linear", linear.receive, methods=["POST"]),
            Route("/healthz", health.healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/api/runs", api.list_runs, methods=["GET"]),
            Route("/api/runs/{run_id}", api.show_run, methods=["GET"]),
            Route("/api/runs/{run_id}/approve", api.approve, methods=["POST"]),
            Route("/api/runs/{run_id}/reject", api.reject, methods=["POST"]),
            Route("/api/runs/{run_id}/stop", api.stop, methods=["POST"]),
            Route("/api/runs/{run_id}/retry", api.retry, methods=["POST"]),
            Route("/api/runs/{run_id}/events", agents.run_event, methods=["POST"]),
            Route("/api/agents", agents.list_agents, methods=["GET"]),
            Route("/api/agents", agents.add_agent, methods=["POST"]),
            Route("/api/agents/{name}/tokens", agents.issue_token, methods=["POST"]),
            Route("/api/agents/{name}/tokens", agents.revoke_tokens, methods=["DELETE"]),
            Route("/webhooks/slack", slack.receive, methods=["POST"]),
            Route("/webhooks/github", github.receive, methods=["POST"]),
            Route("/api/deliveries", deliveries.list_deliveries, methods=["GET"]),
            Route("/metrics", metrics.scrape, methods=["GET"]),
            Route("/openapi.json", openapi.openapi, methods=["GET"]),
            Route("/", pages.home, methods=["GET"]),
            Route("/runs/{run_id}", pages.run, methods=["GET"]),
        ],
        exception_handlers=errors.HANDLERS,
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.clock = clock
    return app


def from_environment() -> Starlette:
    """The uvicorn factory (`foundry web`): settings from the environment, built once."""
    settings = settings_module.load()
    logs.configure(settings.log_format, settings.log_level)
    return create_app(wiring.build(settings))
