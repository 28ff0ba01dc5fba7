"""The ASGI application: routes, error mapping, and the database's lifetime.

One `Route` per path, holding every method the path has, so that a 405's `Allow` lists them all
(Starlette answers a 405 from the first route whose path matches); `methods` dispatches.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from foundry import logs, wiring
from foundry import settings as settings_module
from foundry.web import (
    actions,
    agents,
    api,
    deliveries,
    errors,
    github,
    health,
    linear,
    metrics,
    middleware,
    oauth,
    openapi,
    pages,
    signin,
    slack,
)

# `foundry web` names the host it binds here: uvicorn's factory takes no arguments.
BIND_HOST = "FOUNDRY_BIND_HOST"


def create_app(
    container: wiring.Container,
    *,
    clock: Callable[[], datetime] | None = None,
    bind_host: str | None = None,
) -> Starlette:
    """The app; `bind_host` is where it listens (None: unknown), which decides whether the console
    may be served without an operator token (only on loopback)."""

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
            Route("/webhooks/slack", slack.receive, methods=["POST"]),
            Route("/webhooks/github", github.receive, methods=["POST"]),
            Route("/healthz", health.healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/metrics", metrics.scrape, methods=["GET"]),
            Route("/openapi.json", openapi.openapi, methods=["GET"]),
            Route("/api/runs", api.list_runs, methods=["GET"]),
            Route("/api/runs/{run_id}", api.show_run, methods=["GET"]),
            Route("/api/runs/{run_id}/approve", api.approve, methods=["POST"]),
            Route("/api/runs/{run_id}/reject", api.reject, methods=["POST"]),
            Route("/api/runs/{run_id}/stop", api.stop, methods=["POST"]),
            Route("/api/runs/{run_id}/retry", api.retry, methods=["POST"]),
            Route("/api/runs/{run_id}/events", agents.run_event, methods=["POST"]),
            methods("/api/agents", GET=agents.list_agents, POST=agents.add_agent),
            methods("/api/agents/{name}/tokens", POST=agents.issue_token, DELETE=agents.revoke_tokens),
            Route("/api/deliveries", deliveries.list_deliveries, methods=["GET"]),
            Route("/", pages.home, methods=["GET"]),
            Route("/runs/{run_id}", pages.run, methods=["GET"]),
            Route("/runs/{run_id}/approve", actions.approve, methods=["POST"]),
            Route("/runs/{run_id}/reject", actions.reject, methods=["POST"]),
            Route("/runs/{run_id}/stop", actions.stop, methods=["POST"]),
            Route("/runs/{run_id}/retry", actions.retry, methods=["POST"]),
            Route("/deliveries", pages.deliveries, methods=["GET"]),
            Route("/fragments/runs", pages.runs_fragment, methods=["GET"]),
            Route("/fragments/runs/{run_id}", pages.run_fragment, methods=["GET"]),
            Route("/fragments/deliveries", pages.deliveries_fragment, methods=["GET"]),
            methods("/sign-in", GET=signin.form, POST=signin.sign_in),
            Route("/sign-out", signin.sign_out, methods=["POST"]),
            Route("/static/{name}", pages.static, methods=["GET"]),
            Route("/oauth/linear/install", oauth.install, methods=["GET"]),
            Route("/oauth/linear/callback", oauth.callback, methods=["GET"]),
        ],
        middleware=[Middleware(middleware.CatchAll), Middleware(middleware.StorableInput)],
        exception_handlers=errors.HANDLERS,
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.clock = clock
    app.state.bind_host = bind_host
    return app


Endpoint = Callable[[Request], Awaitable[Response]]


def methods(path: str, **by_method: Endpoint) -> Route:
    """One route for `path` whose endpoint is chosen by the request's method (HEAD as GET)."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return Route(path, dispatch, methods=list(by_method), name=path)


def from_environment() -> Starlette:
    """The uvicorn factory (`foundry web`): settings from the environment, built once."""
    settings = settings_module.load()
    logs.configure(settings.log_format, settings.log_level)
    return create_app(wiring.build(settings), bind_host=os.environ.get(BIND_HOST))
