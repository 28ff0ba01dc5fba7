"""The outbox: external effects written in the transaction that decides them, sent later."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import leases, notify, schema, tallies, updates
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx

OUTBOX = schema.outbox


@dataclass(frozen=True)
class Effect:
    effect_key: str
    kind: str
    payload: Mapping[str, Any]
    run_id: str | None = None


def _enqueue(insert: Any) -> Any:
    return insert(OUTBOX).on_conflict_do_nothing(index_elements=[OUTBOX.c.effect_key]).returning(OUTBOX.c.id)


_ENQUEUE = {"postgresql": _enqueue(postgresql.insert), "sqlite": _enqueue(sqlite.insert)}


async def enqueue(tx: Tx, effect: Effect, *, now: datetime) -> bool:
    """Write the effect once; the same effect key again is a no-op (False)."""
    row = {
        "id": str(uuid.uuid4()),
        "effect_key": effect.effect_key,
        "kind": effect.kind,
        "run_id": effect.run_id,
        "payload": dict(effect.payload),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    if not await tx.rows(_ENQUEUE[tx.dialect], row):
        return False
    await notify.work_created(tx)
    return True


_EARLIER = OUTBOX.alias("earlier")


def _in_order(kinds: tuple[str, ...]) -> Any:
    """An effect of an ordered kind waits while an earlier one of its run (of those kinds) is
    still pending — due, backing off, or held by a sender that may have died: a session's
    activities reach Linear in the order they were decided, the final one last."""
    earlier_pending = sa.exists().where(
        _EARLIER.c.run_id == OUTBOX.c.run_id,
        _EARLIER.c.kind.in_(kinds),
        _EARLIER.c.state == "pending",
        _EARLIER.c.created_at < OUTBOX.c.created_at,
    )
    return sa.or_(OUTBOX.c.kind.not_in(kinds), OUTBOX.c.run_id.is_(None), ~earlier_pending)


async def claim_due(
    tx: Tx, *, owner: str, now: datetime, ttl: timedelta, ordered: tuple[str, ...] = ()
) -> tuple[leases.Lease, Row] | None:
    """Lease the oldest due effect, counting the attempt now (a crash mid-send still counts).
    Effects of the `ordered` kinds are sent one at a time per run, oldest first."""
    claimed = await _claim_for(ordered)(tx, owner=owner, now=now, ttl=ttl)
    if claimed is None:
        return None
    lease, row = claimed
    attempts = await txm.scalar(tx, _COUNT_ATTEMPT, {"b_id": lease.row_id})
    return lease, {**row, "attempts": int(attempts)}


_COUNT_ATTEMPT = (
    sa.update(OUTBOX)
    .where(OUTBOX.c.id == sa.bindparam("b_id"))
    .values(attempts=OUTBOX.c.attempts + 1)
    .returning(OUTBOX.c.attempts)
)


@functools.cache
def _claim_for(ordered: tuple[str, ...]) -> leases.Claim:
    """The claim of a due effect, built once per set of ordered kinds (a sender has one)."""
    ready = [
        OUTBOX.c.state == "pending",
        OUTBOX.c.next_attempt_at <= leases.at_claim(OUTBOX.c.next_attempt_at),
    ]
    if ordered:
        ready.append(_in_order(ordered))
    return leases.Claim(OUTBOX, ready, order_by=OUTBOX.c.next_attempt_at)


async def settle(
    tx: Tx,
    lease: leases.Lease,
    *,
    now: datetime,
    state: str,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record how the attempt ended and release the lease; fenced, so a stale sender is ignored."""
    values: dict[str, Any] = {"state": state, "lease_owner": None, "lease_expires_at": None}
    if result is not None:
        values["result"] = dict(result)
    if state == "sent":
        values["sent_at"] = now
    if error is not None:
        values["last_error"] = error[:2000]
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    settled = await updates.update(
        tx, OUTBOX, sets=values, matches={}, returning=("kind",), lease=lease, at=now
    )
    if settled is not None and state == "failed":
        tallies.effect_failed(tx, settled["kind"])
    return settled is not None


async def find(tx: Tx, effect_key: str) -> Row | None:
    return await txm.first(tx, sa.select(OUTBOX).where(OUTBOX.c.effect_key == effect_key))


async def for_run(tx: Tx, run_id: str, limit: int | None = None) -> Sequence[Row]:
    """The run's effects (by `ix_outbox_run`) in the order they were decided; with `limit`, only
    the newest that many, still oldest first."""
    mine = sa.select(OUTBOX).where(OUTBOX.c.run_id == run_id)
    if limit is None:
        return await tx.rows(mine.order_by(OUTBOX.c.created_at, OUTBOX.c.effect_key))
    newest = mine.order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.effect_key.desc()).limit(limit)
    return list(reversed(await tx.rows(newest)))
