"""UPDATE statements built once per shape and run with bound values.

Built per call, a statement costs more CPU than the database spends running it: SQLAlchemy
coerces every clause and computes the statement's cache key each time (an idle worker pass cost
7.6 ms on Postgres and 12.6 ms on SQLite that way, most of it building its claims). The hot
writes — a compare-and-set transition, a lease holder's fenced write, an outbox settle — differ
from call to call only in their values and in which columns they set, so each shape is built
once; the values travel as parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from foundry.db import leases, schema
from foundry.db.tx import Row, Tx


@dataclass(frozen=True)
class _Shape:
    table: str
    sets: tuple[str, ...]  # columns set to a bound value
    matches: tuple[str, ...]  # columns that must equal a bound value
    fenced: bool  # only while the writer holds its lease
    bump_seq: bool  # the run's timeline counter moves on
    returning: tuple[str, ...]


async def update(
    tx: Tx,
    table: sa.Table,
    *,
    sets: Mapping[str, Any],
    matches: Mapping[str, Any],
    returning: tuple[str, ...],
    lease: leases.Lease | None = None,
    at: datetime | None = None,
    bump_seq: bool = False,
) -> Row | None:
    """`UPDATE table SET sets WHERE matches [AND the lease holds at `at`] RETURNING returning`:
    the returned row, or None when no row matched."""
    shape = _Shape(
        table.name, tuple(sorted(sets)), tuple(sorted(matches)), lease is not None, bump_seq, returning
    )
    params = {f"v_{name}": value for name, value in sets.items()}
    params |= {f"w_{name}": value for name, value in matches.items()}
    if lease is not None:
        assert at is not None, "a fenced write names the instant it writes at"
        params |= lease.fence_params(at)
    found = await tx.rows(_statement(shape), params)
    return found[0] if found else None


@functools.lru_cache(maxsize=512)
def _statement(shape: _Shape) -> Any:
    table = schema.metadata.tables[shape.table]
    where = [table.c[name] == sa.bindparam(f"w_{name}", type_=table.c[name].type) for name in shape.matches]
    if shape.fenced:
        where += leases.fence(table)
    values: dict[str, Any] = {
        name: sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in shape.sets
    }
    if shape.bump_seq:
        values["event_seq"] = table.c.event_seq + 1
    return (
        sa.update(table)
        .where(*where)
        .values(**values)
        .returning(*(table.c[name] for name in shape.returning))
    )
