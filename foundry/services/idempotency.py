"""`Idempotency-Key` for the operator API: one effect, the same answer to every repeat.

The key is reserved (`in_flight`) before the action runs. A concurrent request with the same
key waits — woken at once in this process, by polling across processes — and replays the
stored answer; past the wait it gets 409 with Retry-After. The same key with another request
is 422. If the holder fails, it releases the key and a waiter runs the action instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from foundry.db import idempotency as keys
from foundry.db.database import Database
from foundry.errors import InProgress, RequestError, Unprocessable

# SPEC: a waiter waits up to 10 s. The in-flight lock is longer than any operator action
# (one short transaction), so only a holder that died loses its key.
WAIT_S = 10.0
LOCK = timedelta(seconds=30)
TTL = timedelta(hours=24)
# Across processes there is no wake-up call: how often a waiter looks again.
POLL_S = 0.05


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    replayed: bool = False


Action = Callable[[], Awaitable[Reply]]
Redact = Callable[[Any], Any]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Same request ⇔ same fingerprint; JSON bodies compare by content, not by spacing."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class Idempotency:
    def __init__(self, db: Database, *, clock: Callable[[], datetime], wait_s: float = WAIT_S) -> None:
        self._db = db
        self._clock = clock
        self._wait_s = wait_s
        self._done: dict[tuple[str, str], asyncio.Event] = {}

    async def execute(
        self, scope: str, key: str, fingerprint: str, action: Action, *, stored: Redact | None = None
    ) -> Reply:
        """Run `action` once for this key. `stored` shapes what is kept for replays (a new
        token is answered once and never stored)."""
        holder = str(uuid.uuid4())
        found = await self._reserve_or_wait(scope, key, fingerprint, holder)
        if found is not None:
            return found
        try:
            reply = await self._act(action)
        except BaseException:
            await self._db.transaction(lambda tx: keys.release(tx, scope, key, holder=holder))
            raise
        finally:
            self._wake(scope, key)
        if reply.status >= 500:
            await self._db.transaction(lambda tx: keys.release(tx, scope, key, holder=holder))
        else:
            body = reply.body if stored is None else stored(reply.body)
            await self._db.transaction(
                lambda tx: keys.complete(tx, scope, key, holder=holder, status=reply.status, body=body)
            )
        self._wake(scope, key)
        return reply

    async def _reserve_or_wait(self, scope: str, key: str, fingerprint: str, holder: str) -> Reply | None:
        deadline = time.monotonic() + self._wait_s
        while True:
            got = await self._db.transaction(
                lambda tx: keys.reserve(
                    tx,
                    scope,
                    key,
                    fingerprint=fingerprint,
                    holder=holder,
                    now=self._clock(),
                    lock=LOCK,
                    ttl=TTL,
                )
            )
            if got.state == "held":
                return None
            if got.state == "mismatch":
                raise Unprocessable("This Idempotency-Key was used with a different request.")
            if got.state == "done":
                return Reply(int(got.status or 200), got.body, replayed=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InProgress("A request with this Idempotency-Key is still in progress; retry shortly.")
            await self._wait(scope, key, min(POLL_S, remaining))

    async def _act(self, action: Action) -> Reply:
        try:
            return await action()
        except RequestError as exc:  # a refusal is an answer too: stored and replayed
            return Reply(exc.status_code, {"error": str(exc)})

    async def _wait(self, scope: str, key: str, timeout: float) -> None:
        event = self._done.setdefault((scope, key), asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _wake(self, scope: str, key: str) -> None:
        event = self._done.pop((scope, key), None)
        if event is not None:
            event.set()
