"""Reading a request body without ever holding more than the configured cap."""

from __future__ import annotations

from pydantic import SecretStr
from starlette.requests import Request

from foundry.errors import NotConfigured, PayloadTooLarge
from foundry.web import context


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the {limit}-byte limit.")
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
