"""Reading a request body without ever holding more than the configured cap."""

from __future__ import annotations

from starlette.requests import Request

from foundry.errors import PayloadTooLarge


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
