"""Leases with fencing: claim a row, heartbeat it, and make every write prove it still holds it.

A claim bumps the row's `lease_epoch`. Every write by the holder names the epoch it claimed
and the instant it writes at; a holder whose lease expired — whether or not someone else has
taken over — matches no row and changes nothing. Claims use `FOR UPDATE SKIP LOCKED` on
Postgres, so concurrent workers never queue on one row; on SQLite the claim runs under the
write lock (`BEGIN IMMEDIATE`), which serialises claimers anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from foundry.db import tx as txm
from foundry.db.tx import Row, Tx


@dataclass(frozen=True)
class Lease:
    table: str
    row_id: str
    owner: str
    epoch: int

    def fence(self, table: sa.Table, now: datetime) -> list[Any]:
        """The WHERE clauses that make a write conditional on still holding this lease."""
        return [
            table.c.id == self.row_id,
            table.c.lease_owner == self.owner,
            table.c.lease_epoch == self.epoch,
            table.c.lease_expires_at >= now,
        ]


async def claim(
    tx: Tx,
    table: sa.Table,
    ready: list[Any],
    *,
    owner: str,
    now: datetime,
    ttl: timedelta,
    order_by: Any,
) -> tuple[Lease, Row] | None:
    """Claim the first row that is `ready` and unleased (or whose lease expired)."""
    free = sa.or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < now)
    candidate = (
        sa.select(table.c.id)
        .where(*ready, free)
        .order_by(order_by)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        sa.update(table)
        .where(table.c.id == candidate)
        .values(lease_owner=owner, lease_expires_at=now + ttl, lease_epoch=table.c.lease_epoch + 1)
        .returning(*table.columns)
    )
    row = await txm.first(tx, stmt)
    if row is None:
        return None
    return Lease(table.name, str(row["id"]), owner, int(row["lease_epoch"])), row


async def heartbeat(tx: Tx, table: sa.Table, lease: Lease, *, now: datetime, ttl: timedelta) -> bool:
    """Extend the lease; False means it was lost and the holder must stop writing."""
    stmt = (
        sa.update(table)
        .where(*lease.fence(table, now))
        .values(lease_expires_at=now + ttl)
        .returning(table.c.id)
    )
    return bool(await tx.rows(stmt))


async def release(tx: Tx, table: sa.Table, lease: Lease, *, now: datetime) -> bool:
    stmt = (
        sa.update(table)
        .where(*lease.fence(table, now))
        .values(lease_owner=None, lease_expires_at=None)
        .returning(table.c.id)
    )
    return bool(await tx.rows(stmt))
