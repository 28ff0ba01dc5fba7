"""Reading a request body without ever holding more than the configured cap, or for longer than
`webhooks.body_timeout_s`: a client trickling bytes cannot hold a connection slot."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from starlette.requests import Request

from foundry.errors import NotConfigured, PayloadTooLarge, RequestTimeout
from foundry.web import context


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, within `limit` bytes (else 413) and the body deadline (else 408)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:  # "²" is a digit too
        raise PayloadTooLarge(f"The body is larger than the {limit}-byte limit.")
    deadline_s = context.container(request).settings.webhooks.body_timeout_s
    try:
        async with asyncio.timeout(deadline_s):
            return await _read(request, limit)
    except TimeoutError as exc:
        raise RequestTimeout(f"The body did not arrive within {deadline_s:g} seconds.") from exc


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the {limit}-byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


async def webhook_body(
    request: Request, secret: SecretStr | None, setting: str, what: str
) -> tuple[str, bytes]:
    """The first two checks every receiver makes, in SPEC order: its secret is configured
    (else 503), and the body is within `webhooks.max_body_bytes` (else 413)."""
    if secret is None:
        raise NotConfigured(f"{what} is not configured: set {setting}.")
    limit = context.container(request).settings.webhooks.max_body_bytes
    return secret.get_secret_value(), await read_capped(request, limit)
