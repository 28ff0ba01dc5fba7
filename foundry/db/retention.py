"""Bounded deletes of rows past their retention: one short transaction per batch, never a long one."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.sql import Executable

from foundry.db import schema, tallies
from foundry.db.tx import Tx

D = schema.deliveries
K = schema.idempotency_keys


def _oldest_first(
    table: sa.Table, column: sa.Column[datetime], key: list[sa.Column[str]], returning: list[sa.Column[str]]
) -> Executable:
    """DELETE the `limit` oldest rows before the cutoff, by primary key.

    Neither database takes `DELETE … LIMIT` portably, so the batch is chosen by a subquery. On
    Postgres its rows are locked `SKIP LOCKED`: two workers pruning at once take disjoint batches,
    and a row a request holds (an idempotency key being reserved) is left for the next pass.
    """
    batch = (
        sa.select(*key)
        .where(column < sa.bindparam("b_before"))
        .order_by(column)
        .limit(sa.bindparam("b_limit"))
        .with_for_update(skip_locked=True)
    )
    chosen = key[0].in_(batch) if len(key) == 1 else sa.tuple_(*key).in_(batch)
    return sa.delete(table).where(chosen).returning(*returning)


# A pruned delivery leaves the count of recorded deliveries: its (source, verdict) says which.
_DELIVERIES = _oldest_first(D, D.c.received_at, [D.c.id], [D.c.source, D.c.verdict])
_IDEMPOTENCY_KEYS = _oldest_first(K, K.c.expires_at, [K.c.scope, K.c.key], [K.c.key])


async def prune_deliveries(tx: Tx, *, received_before: datetime, limit: int) -> int:
    """Delete up to `limit` deliveries received before the instant; how many went."""
    pruned = await tx.rows(_DELIVERIES, {"b_before": received_before, "b_limit": limit})
    tallies.deliveries_pruned(tx, [(row["source"], row["verdict"]) for row in pruned])
    return len(pruned)


async def prune_idempotency_keys(tx: Tx, *, expired_by: datetime, limit: int) -> int:
    """Delete up to `limit` idempotency keys that expired before the instant; how many went."""
    return len(await tx.rows(_IDEMPOTENCY_KEYS, {"b_before": expired_by, "b_limit": limit}))
