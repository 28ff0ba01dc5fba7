"""The runner's HTTP side: `POST /jobs` takes a job or a cancel from Foundry, `GET /healthz`.

Short glue, in Foundry's order: read the capped body, verify `X-Foundry-Signature` on the raw
bytes (401), parse (400), record in the store, answer. A job is recorded before its 202, and the
same key again answers 200 with no second piece of work; the work itself is the pool's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundry import logs
from foundry.clients.agents import signature
from foundry.errors import BadRequest, PayloadTooLarge, RequestError, RequestTimeout, Unauthorized
from foundry.runner import jobs
from foundry.runner.store import Store
from foundry.runner.work import Pool

log = logs.get("foundry.runner")
Clock = Callable[[], float]

App = Starlette
PATH = "/jobs"
# A job is a few kilobytes (the plan, the issue, failing checks cut to 2,000 characters each).
MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 10.0


class Intake:
    """What a delivery does once verified and parsed: record the job, or the cancel."""

    def __init__(self, store: Store, pool: Pool, clock: Clock) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock

    def job(self, job: jobs.Job, raw: bytes) -> tuple[int, dict[str, Any]]:
        named = {"run_id": job.run_id, "attempt": job.attempt}
        queued, state = self._store.accept(job.key, job.run_id, job.attempt, raw.decode(), self._clock())
        if not queued:
            log.info("runner.job_duplicate", state=state, **named)
            return 200, {"duplicate": True, "state": state, **named}
        log.info("runner.job_received", repository=job.repository, branch=job.branch, **named)
        self._pool.wake()
        return 202, {"accepted": True, "state": state, **named}

    def cancel(self, cancel: jobs.Cancel) -> tuple[int, dict[str, Any]]:
        named = {"run_id": cancel.run_id, "attempt": cancel.attempt}
        was = self._store.cancel(cancel.key, cancel.run_id, cancel.attempt, self._clock())
        if was == "running":
            self._pool.cancel(cancel.key)  # recorded first: the pool reads the store after registering
        log.info("runner.cancel_received", was=was or "unknown", **named)
        return 200, {"cancelled": was in (None, "queued", "running"), "was": was, **named}


def create_app(intake: Intake, agent_token: str) -> Starlette:
    signing_key = hashlib.sha256(agent_token.encode()).hexdigest()

    async def receive(request: Request) -> Response:
        raw = await _read(request)
        _verify(signing_key, raw, request.headers.get("x-foundry-signature", ""))
        found = jobs.parse(raw)
        jobs.check_key(found, request.headers.get("idempotency-key"))
        if isinstance(found, jobs.Cancel):
            status, body = await anyio.to_thread.run_sync(intake.cancel, found)
        else:
            status, body = await anyio.to_thread.run_sync(intake.job, found, raw)
        return JSONResponse(body, status_code=status)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route(PATH, receive, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])],
        exception_handlers={RequestError: _refused, HTTPException: _http, Exception: _unexpected},
    )


def _verify(signing_key: str, raw: bytes, given: str) -> None:
    if not given or not hmac.compare_digest(signature(signing_key, raw), given):
        raise Unauthorized("The X-Foundry-Signature does not match this body and the agent's token.")


async def _read(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is larger than the {MAX_BODY_BYTES}-byte limit.")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise PayloadTooLarge(f"The body is larger than the {MAX_BODY_BYTES}-byte limit.")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeout(f"The body did not arrive within {BODY_TIMEOUT_S:g} seconds.") from exc
    if not chunks:
        raise BadRequest("The body is empty.")
    return b"".join(chunks)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    log.info("runner.delivery_refused", status=exc.status_code, reason=str(exc))
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("runner.unexpected_error", exc_info=exc)
    return JSONResponse({"error": "The runner failed unexpectedly; send the job again."}, status_code=500)
