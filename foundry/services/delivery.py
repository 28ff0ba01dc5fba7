"""One inbound delivery, one transaction, one outcome — exactly once, for every source.

The effect runs first and the delivery is recorded last, in the same transaction. If the
delivery was already recorded — by its provider's delivery id (a redelivery, or a concurrent
copy that committed first) or by the digest of its signed bytes (a captured body replayed under
a new, unsigned id) — the whole transaction rolls back, effect included, and the caller hears
`duplicate`. A delivery whose processing fails is therefore never marked seen, and the sender's
retry still works.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from foundry import logs
from foundry.db import deliveries
from foundry.db import intake as intake_store
from foundry.db.database import Database
from foundry.db.tx import Tx

log = logs.get("foundry.delivery")


@dataclass(frozen=True)
class Delivery:
    source: str
    key: str
    event: str
    received_at: datetime
    # SHA-256 (hex) of the signed bytes (`digest(body)`); None for deliveries Foundry makes itself.
    digest: str | None = None


@dataclass(frozen=True)
class Result:
    outcome: str
    run_id: str | None = None
    reason: str | None = None
    changed: bool | None = None


Step = Callable[[Tx, deliveries.NewDelivery], Coroutine[Any, Any, Result]]


def digest(body: bytes) -> str:
    """The digest a delivery is also known by: SHA-256 (hex) of the bytes its sender signed."""
    return hashlib.sha256(body).hexdigest()


async def process(db: Database, delivery: Delivery, step: Step) -> Result:
    new = _new(delivery)
    try:
        result = await db.transaction(lambda tx: step(tx, new))
    except intake_store.AlreadyRecorded:
        result = await db.transaction(lambda tx: _duplicate(tx, delivery), write=False)
    log.info(
        "delivery.accepted",
        source=delivery.source,
        delivery_id=delivery.key,
        delivery_event=delivery.event,
        outcome=result.outcome,
        run_id=result.run_id,
        reason=result.reason,
    )
    return result


def process_sync(db: Database, delivery: Delivery, step: Step) -> Result:
    """`process` for synchronous callers (the worker): the same transaction, the same rules."""
    new = _new(delivery)
    try:
        return db.transaction_sync(lambda tx: step(tx, new))
    except intake_store.AlreadyRecorded:
        return db.transaction_sync(lambda tx: _duplicate(tx, delivery), write=False)


def _new(delivery: Delivery) -> deliveries.NewDelivery:
    return deliveries.NewDelivery(
        str(uuid.uuid4()),
        delivery.source,
        delivery.key,
        # The event name is a label for people (its column holds 64): shorten, never fail.
        delivery.event[:64],
        delivery.received_at,
        delivery.digest,
    )


async def recorded(tx: Tx, d: deliveries.NewDelivery, result: Result, *, refused: bool = False) -> Result:
    """Record the delivery with the verdict of its effect; a second copy rolls both back."""
    verdict = "refused" if refused else result.outcome
    if not await deliveries.record(tx, d, verdict=verdict, run_id=result.run_id, reason=result.reason):
        raise intake_store.AlreadyRecorded
    return result


def ignore(reason: str) -> Step:
    return lambda tx, d: recorded(tx, d, Result("ignored", reason=reason))


async def _duplicate(tx: Tx, delivery: Delivery) -> Result:
    seen = await deliveries.find(tx, delivery.source, delivery.key, delivery.digest)
    return Result("duplicate", seen["run_id"] if seen else None)
