"""Every error becomes a JSON `{"error": "<one sentence>"}` here, and nowhere else.

An exception none of these handlers knows is answered by `middleware.CatchAll`, outside
Starlette's `ServerErrorMiddleware` (which would re-raise it and so drop the connection).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from foundry import logs
from foundry.errors import (
    DatabaseUnavailable,
    InvalidValue,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    SchemaNotAtHead,
    StorageError,
)

log = logs.get("foundry.web")

_HTTP_SENTENCES = {
    404: "No such route.",
    405: "This method is not allowed on this route.",
}
# Answered before the body was read to its end: the rest of it cannot be told from the next
# request on the connection, so the connection ends with the answer.
_BODY_UNREAD = (PayloadTooLarge, RequestTimeout)
INTERNAL = "An internal error occurred."


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


async def on_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    headers: dict[str, str] = {}
    if exc.status_code == 401 and _is_api(request):
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, _BODY_UNREAD):
        headers["Connection"] = "close"
    return error_response(exc.status_code, str(exc), headers)


async def on_storage_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DatabaseUnavailable):
        log.warning("database.unavailable", path=request.url.path, error=str(exc))
        return error_response(
            503,
            "The database is unavailable; please retry.",
            {"Retry-After": str(DatabaseUnavailable.retry_after_s)},
        )
    if isinstance(exc, SchemaNotAtHead):
        return error_response(503, str(exc), {"Retry-After": "30"})
    if isinstance(exc, InvalidValue):
        log.warning("storage.refused_value", path=request.url.path, error=str(exc))
        return error_response(400, "A value in the request cannot be stored (out of range or invalid).")
    log.error("storage.error", path=request.url.path, error=str(exc))
    return error_response(500, "An internal storage error occurred.")


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_SENTENCES.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, exc.headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


HANDLERS = {
    RequestError: on_request_error,
    StorageError: on_storage_error,
    HTTPException: on_http_exception,
}
