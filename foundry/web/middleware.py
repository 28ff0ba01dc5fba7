"""Our two pure-ASGI middlewares: what no route handler may see, and what no handler caught.

`CatchAll` sits outside everything but Starlette's `ServerErrorMiddleware`. An exception it
catches is answered and never re-raised: re-raised, it would reach uvicorn, which drops a
keep-alive connection without a `Connection: close`, and the client's next request on it fails.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundry import logs
from foundry.inbound import text
from foundry.web import errors, refusals

WEBHOOK_SOURCES = frozenset({"linear", "github", "slack"})

log = logs.get("foundry.web")


class CatchAll:
    """An unexpected exception answers a JSON 500, logged once, and the connection stays usable."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error("request.failed", path=scope.get("path"), response_started=started, exc_info=exc)
            if not started:  # a response under way cannot be replaced by another
                await errors.error_response(500, errors.INTERNAL)(scope, receive, send)


class StorableInput:
    """The path, the query string and the headers hold no NUL or lone surrogate (which no column
    stores), checked here once for every route; JSON bodies are checked by their parsers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = unstorable(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        source = webhook_source(scope["path"])
        if source is not None:  # a refused delivery is logged and counted like any other
            await refusals.refused(Request(scope), source, "bad_request", 400)
        await errors.error_response(400, found)(scope, receive, send)


def webhook_source(path: str) -> str | None:
    source = path.removeprefix("/webhooks/")
    return source if source != path and source in WEBHOOK_SOURCES else None


def unstorable(scope: Scope) -> str | None:
    """One sentence naming the part of the request that holds what no column stores, or None."""
    found = text.problem(scope["path"])
    if found:
        return f"The path contains {found}."
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        found = text.problem(name) or text.problem(value)
        if found:
            return f"The query string contains {found}."
    # Headers are latin-1 bytes: a NUL is the one thing in them no column stores.
    if any(b"\x00" in name + value for name, value in scope["headers"]):
        return "A header contains a NUL character."
    return None
