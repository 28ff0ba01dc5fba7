"""How a request reaches the container the app was built with, and the clock."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from foundry.wiring import Container


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)
