"""Leases with fencing: claim a row, heartbeat it, and make every write prove it still holds it.

A claim bumps the row's `lease_epoch`. Every write by the holder names the epoch it claimed
and the instant it writes at; a holder whose lease expired — whether or not someone else has
taken over — matches no row and changes nothing. Claims use `FOR UPDATE SKIP LOCKED` on
Postgres, so concurrent workers never queue on one row; on SQLite the claim runs under the
write lock (`BEGIN IMMEDIATE`), which serialises claimers anyway.
"""

from __future__ import annotations

import functools
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

    def fence_params(self, now: datetime) -> dict[str, Any]:
        """The values of `fence(table)`'s parameters for a write at `now`."""
        return {
            "fence_id": self.row_id,
            "fence_owner": self.owner,
            "fence_epoch": self.epoch,
            "fence_now": now,
        }


def fence(table: sa.Table) -> list[Any]:
    """The WHERE clauses that make a write conditional on still holding a lease (its values from
    `Lease.fence_params`): built once per statement, not per write."""
    return [
        table.c.id == sa.bindparam("fence_id", type_=table.c.id.type),
        table.c.lease_owner == sa.bindparam("fence_owner", type_=table.c.lease_owner.type),
        table.c.lease_epoch == sa.bindparam("fence_epoch", type_=table.c.lease_epoch.type),
        table.c.lease_expires_at >= sa.bindparam("fence_now", type_=table.c.lease_expires_at.type),
    ]


# The bind name of the claiming instant: a `ready` clause that compares with "now" (an effect
# due by then) uses `at_claim(column)`, and gets the same value as the lease check.
_NOW = "claim_now"


def at_claim(column: sa.Column[Any]) -> Any:
    """The claiming instant, as a parameter typed like `column`, for a `ready` clause."""
    return sa.bindparam(_NOW, type_=column.type)


class Claim:
    """One kind of claim — the first row of `table` that is `ready` and unleased (or whose lease
    expired), in `order_by` order — its statement built once. Built per call, the statement's
    construction and cache key cost more than running it: four such claims made an idle worker
    pass cost milliseconds of CPU on every wake."""

    def __init__(self, table: sa.Table, ready: list[Any], *, order_by: Any) -> None:
        self.table = table
        now = at_claim(table.c.lease_expires_at)
        free = sa.or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < now)
        candidate = (
            sa.select(table.c.id)
            .where(*ready, free)
            .order_by(order_by)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        self._stmt = (
            sa.update(table)
            .where(table.c.id == candidate)
            .values(
                lease_owner=sa.bindparam("claim_owner", type_=table.c.lease_owner.type),
                lease_expires_at=sa.bindparam("claim_expires", type_=table.c.lease_expires_at.type),
                lease_epoch=table.c.lease_epoch + 1,
            )
            .returning(*table.columns)
        )

    async def __call__(
        self, tx: Tx, *, owner: str, now: datetime, ttl: timedelta
    ) -> tuple[Lease, Row] | None:
        params = {_NOW: now, "claim_owner": owner, "claim_expires": now + ttl}
        row = await txm.first(tx, self._stmt, params)
        if row is None:
            return None
        return Lease(self.table.name, str(row["id"]), owner, int(row["lease_epoch"])), row


async def heartbeat(tx: Tx, table: sa.Table, lease: Lease, *, now: datetime, ttl: timedelta) -> bool:
    """Extend the lease; False means it was lost and the holder must stop writing."""
    return bool(await tx.rows(_heartbeat(table), {**lease.fence_params(now), "hb_expires": now + ttl}))


async def release(tx: Tx, table: sa.Table, lease: Lease, *, now: datetime) -> bool:
    return bool(await tx.rows(_release(table), lease.fence_params(now)))


@functools.cache
def _heartbeat(table: sa.Table) -> Any:
    expires = sa.bindparam("hb_expires", type_=table.c.lease_expires_at.type)
    return sa.update(table).where(*fence(table)).values(lease_expires_at=expires).returning(table.c.id)


@functools.cache
def _release(table: sa.Table) -> Any:
    return (
        sa.update(table)
        .where(*fence(table))
        .values(lease_owner=None, lease_expires_at=None)
        .returning(table.c.id)
    )
