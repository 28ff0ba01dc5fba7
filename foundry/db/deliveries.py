"""Inbound deliveries: the durable record that makes every redelivery and every replay a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema, tallies
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
    # SHA-256 (hex) of the signed bytes; None for deliveries Foundry makes itself.
    body_digest: str | None = None


def _record(insert: Any) -> Any:
    # No conflict target: a conflict on any unique constraint of the table is a duplicate — the
    # provider's delivery id (`uniq_delivery_per_source`) or the signed bytes' digest
    # (`uniq_delivery_digest_per_source`). The only other one is the primary key, a fresh UUID.
    # A NULL digest (our own deliveries) never conflicts: NULLs are distinct in both databases.
    return insert(D).on_conflict_do_nothing().returning(D.c.id)


_RECORD = {"postgresql": _record(postgresql.insert), "sqlite": _record(sqlite.insert)}
# The earlier delivery a duplicate repeats: by key, else by digest (`= NULL` matches nothing).
_KEY_MATCH = D.c.delivery_key == sa.bindparam("b_key")
_FIND = (
    sa.select(D.c.id, D.c.verdict, D.c.run_id)
    .where(
        D.c.source == sa.bindparam("b_source"),
        sa.or_(_KEY_MATCH, D.c.body_digest == sa.bindparam("b_digest")),
    )
    .order_by(sa.case((_KEY_MATCH, 0), else_=1))
    .limit(1)
)


async def record(
    tx: Tx, delivery: NewDelivery, *, verdict: str, run_id: str | None, reason: str | None = None
) -> bool:
    """Record the delivery with its verdict; False when its key or its digest was already
    recorded for its source."""
    params = {**delivery.__dict__, "verdict": verdict, "run_id": run_id, "reason": reason}
    if not await tx.rows(_RECORD[tx.dialect], params):
        return False
    tallies.delivery_recorded(tx, delivery.source, verdict)
    return True


async def find(tx: Tx, source: str, delivery_key: str, body_digest: str | None = None) -> Row | None:
    """The recorded delivery with this key — or, failing that, with this digest."""
    params = {"b_source": source, "b_key": delivery_key, "b_digest": body_digest}
    return await txm.first(tx, _FIND, params)


async def recent(
    tx: Tx,
    *,
    limit: int = 50,
    source: str | None = None,
    run_id: str | None = None,
    before: tuple[datetime, str] | None = None,
) -> Sequence[Row]:
    """Deliveries newest first by (received_at, id) — an index range (`ix_deliveries_received`,
    by source `ix_deliveries_source_received`) whatever the history; `before` is a keyset cursor."""
    stmt = sa.select(D).order_by(D.c.received_at.desc(), D.c.id.desc()).limit(limit)
    if before is not None:
        at, delivery_id = before
        cursor = (sa.literal(at, D.c.received_at.type), sa.literal(delivery_id, D.c.id.type))
        stmt = stmt.where(sa.tuple_(D.c.received_at, D.c.id) < sa.tuple_(*cursor))
    if source is not None:
        stmt = stmt.where(D.c.source == source)
    if run_id is not None:
        stmt = stmt.where(D.c.run_id == run_id)
    return await tx.rows(stmt)
