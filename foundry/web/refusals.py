"""Refused deliveries: each one logged as `delivery.refused` and counted, by source and reason.

A receiver runs its checks inside `guarded(request, source)`: a `RequestError` (or a value the
database refused) passing out of it is logged and counted, then re-raised unchanged, so that
`web/errors.py` still answers it. The log names the source, the reason, the status and the
remote address — never the body, a signature or a secret. The count is best effort: a
database that is down costs the count, never the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from foundry import logs
from foundry.errors import (
    BadRequest,
    InvalidValue,
    NotConfigured,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from foundry.web import context

log = logs.get("foundry.delivery")

# The reason a refusal is logged and counted under, by the error that refused it (the first
# class of its MRO found here). Stable slugs: dashboards and alerts are written against them.
REASONS: dict[type[Exception], str] = {
    NotConfigured: "not_configured",
    PayloadTooLarge: "too_large",
    RequestTimeout: "body_timeout",
    Unauthorized: "bad_signature",
    BadRequest: "bad_request",
    InvalidValue: "bad_request",  # the database's last line behind parsing: a 400 as well
}
STALE_TIMESTAMP = "stale_timestamp"
OTHER = "other"


class Guard:
    """What a receiver knows about its refusal that the error's type does not say."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def stale(self, message: str) -> Unauthorized:
        """The 401 for a signed timestamp outside its window, counted as `stale_timestamp`."""
        self.reason = STALE_TIMESTAMP
        return Unauthorized(message)


@asynccontextmanager
async def guarded(request: Request, source: str) -> AsyncIterator[Guard]:
    guard = Guard()
    try:
        yield guard
    except (RequestError, InvalidValue) as exc:
        await refused(request, source, guard.reason or reason_for(exc), status_of(exc))
        raise


async def refused(request: Request, source: str, reason: str, status: int) -> None:
    remote = request.client.host if request.client else None
    log.warning("delivery.refused", source=source, reason=reason, status=status, remote_addr=remote)
    await context.container(request).metrics.count_refused(source, reason)


def reason_for(exc: Exception) -> str:
    return next((REASONS[kind] for kind in type(exc).__mro__ if kind in REASONS), OTHER)


def status_of(exc: Exception) -> int:
    return exc.status_code if isinstance(exc, RequestError) else 400
