"""Idempotency keys: reserve before acting, store the response, replay it to every repeat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Tx

K = schema.idempotency_keys


@dataclass(frozen=True)
class Reservation:
    state: str  # held | done | busy | mismatch
    status: int | None = None
    body: Any = None


def _insert(insert: Any) -> Any:
    return insert(K).on_conflict_do_nothing(index_elements=[K.c.scope, K.c.key]).returning(K.c.key)


_INSERT = {"postgresql": _insert(postgresql.insert), "sqlite": _insert(sqlite.insert)}


def _this(scope: str, key: str) -> list[Any]:
    return [K.c.scope == scope, K.c.key == key]


async def reserve(
    tx: Tx,
    scope: str,
    key: str,
    *,
    fingerprint: str,
    holder: str,
    now: datetime,
    lock: timedelta,
    ttl: timedelta,
) -> Reservation:
    """Insert `in_flight` first; only if the key exists, look at what it holds."""
    fresh = {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "state": "in_flight",
        "holder": holder,
        "locked_until": now + lock,
        "expires_at": now + ttl,
        "created_at": now,
    }
    if await tx.rows(_INSERT[tx.dialect], fresh):
        return Reservation("held")
    row = await txm.first(tx, sa.select(K).where(*_this(scope, key)).with_for_update())
    if row is None or row["expires_at"] < now:  # expired (or pruned meanwhile): start afresh
        await tx.rows(sa.delete(K).where(*_this(scope, key)))
        # Another reserver may have inserted since our SELECT: only our own insert holds it.
        return Reservation("held" if await tx.rows(_INSERT[tx.dialect], fresh) else "busy")
    if row["fingerprint"] != fingerprint:
        return Reservation("mismatch")
    if row["state"] == "done":
        return Reservation("done", row["response_status"], row["response_body"])
    if row["locked_until"] < now:  # the holder died mid-request: take the key over
        await tx.rows(sa.update(K).where(*_this(scope, key)).values(holder=holder, locked_until=now + lock))
        return Reservation("held")
    return Reservation("busy")


async def complete(tx: Tx, scope: str, key: str, *, holder: str, status: int, body: Any) -> bool:
    stmt = (
        sa.update(K)
        .where(*_this(scope, key), K.c.holder == holder, K.c.state == "in_flight")
        .values(state="done", response_status=status, response_body=body)
        .returning(K.c.key)
    )
    return bool(await tx.rows(stmt))


async def release(tx: Tx, scope: str, key: str, *, holder: str) -> None:
    """Give the key up after a failure, so that a waiter (or the sender's retry) runs instead."""
    await tx.rows(sa.delete(K).where(*_this(scope, key), K.c.holder == holder, K.c.state == "in_flight"))


async def prune(tx: Tx, now: datetime) -> int:
    return len(await tx.rows(sa.delete(K).where(K.c.expires_at < now).returning(K.c.key)))
