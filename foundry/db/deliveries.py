"""Inbound deliveries: the durable record that makes every redelivery a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx

D = schema.deliveries


@dataclass(frozen=True)
class NewDelivery:
    id: str
    source: str
    delivery_key: str
    event: str
    received_at: datetime


def _record(insert: Any) -> Any:
    return insert(D).on_conflict_do_nothing(index_elements=[D.c.source, D.c.delivery_key]).returning(D.c.id)


_RECORD = {"postgresql": _record(postgresql.insert), "sqlite": _record(sqlite.insert)}
_FIND = sa.select(D.c.id, D.c.verdict, D.c.run_id).where(
    D.c.source == sa.bindparam("b_source"), D.c.delivery_key == sa.bindparam("b_key")
)


async def record(
    tx: Tx, delivery: NewDelivery, *, verdict: str, run_id: str | None, reason: str | None = None
) -> bool:
    """Record the delivery with its verdict; False when (source, key) was already recorded."""
    params = {**delivery.__dict__, "verdict": verdict, "run_id": run_id, "reason": reason}
    return bool(await tx.rows(_RECORD[tx.dialect], params))


async def find(tx: Tx, source: str, delivery_key: str) -> Row | None:
    return await txm.first(tx, _FIND, {"b_source": source, "b_key": delivery_key})


async def recent(
    tx: Tx, *, limit: int = 50, source: str | None = None, run_id: str | None = None
) -> Sequence[Row]:
    stmt = sa.select(D).order_by(D.c.received_at.desc(), D.c.id).limit(limit)
    if source is not None:
        stmt = stmt.where(D.c.source == source)
    if run_id is not None:
        stmt = stmt.where(D.c.run_id == run_id)
    return await tx.rows(stmt)
