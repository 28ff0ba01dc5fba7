"""Counters kept in the database, so that every process adds to, and reports, the same figure.

A series is a name and its labels, stored as the canonical `k=v,k=v` (keys sorted). Label
values are slugs (no `,` or `=`): the names and reasons Foundry chooses, never sender input.

The transactions that change state also count the change (`add`), so a scrape reads a few
hundred counter rows whatever the history holds. Two choices keep that cheap for writers:

* a transaction's deltas are written together, in one upsert sorted by series, just before it
  commits (`flush`, called by `Database.transaction`): the counter rows are the last locks it
  takes and every transaction takes them in the same order, so counting can neither deadlock
  nor hold a row lock for longer than the commit;
* on Postgres each series is spread over `SHARDS` rows and a transaction writes to one chosen
  at random, so concurrent deliveries rarely queue on the same row; a read sums the shards.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema
from foundry.db.tx import Tx

M = schema.metric_counters
# Enough that 64 concurrent writers seldom meet on one row; few enough that a scrape of every
# series (a few dozen) stays a few thousand rows.
SHARDS = 32
# Its own generator: the shard is no one else's business, and the global one belongs to callers.
_shard = random.Random()


def _increment(insert: Any) -> Any:
    stmt = insert(M).values(
        name=sa.bindparam("b_name"),
        labels=sa.bindparam("b_labels"),
        shard=sa.bindparam("b_shard"),
        value=sa.bindparam("b_by"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[M.c.name, M.c.labels, M.c.shard], set_={"value": M.c.value + stmt.excluded.value}
    )


_INCREMENT = {"postgresql": _increment(postgresql.insert), "sqlite": _increment(sqlite.insert)}
# Postgres: every delta of a transaction in one round trip, in series order (the lock order).
_INCREMENT_MANY = sa.text("""
INSERT INTO metric_counters (name, labels, shard, value)
SELECT name, labels, :shard, value
FROM json_to_recordset(CAST(:deltas AS json)) AS delta(name text, labels text, value bigint)
ORDER BY name, labels
ON CONFLICT (name, labels, shard) DO UPDATE SET value = metric_counters.value + excluded.value
""")
_BY_NAME = (
    sa.select(M.c.labels, sa.func.sum(M.c.value).label("value"))
    .where(M.c.name == sa.bindparam("b_name"))
    .group_by(M.c.labels)
    .order_by(M.c.labels)
)


def shard() -> int:
    """The counter row a Postgres transaction adds to, chosen at random."""
    return _shard.randrange(SHARDS)


def canonical(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def labels_of(text: str) -> dict[str, str]:
    """The labels a canonical string stands for (the inverse of `canonical`)."""
    return dict(pair.split("=", 1) for pair in text.split(",")) if text else {}


def add(tx: Tx, name: str, labels: Mapping[str, str], by: int = 1) -> None:
    """Count `by` on the series when this transaction commits (nothing if it rolls back)."""
    key = (name, canonical(labels))
    tx.tally[key] = tx.tally.get(key, 0) + by


async def flush(tx: Tx) -> None:
    """Write the transaction's deltas: the last statement before its commit."""
    deltas = sorted((key, by) for key, by in tx.tally.items() if by != 0)
    tx.tally.clear()
    if not deltas:
        return
    if tx.dialect == "postgresql":
        rows = [{"name": name, "labels": labels, "value": by} for (name, labels), by in deltas]
        params = {"shard": shard(), "deltas": json.dumps(rows)}
        await tx.rows(_INCREMENT_MANY, params)
        return
    for (name, labels), by in deltas:  # SQLite: one writer at a time, one shard
        await tx.rows(_INCREMENT["sqlite"], {"b_name": name, "b_labels": labels, "b_shard": 0, "b_by": by})


async def increment(tx: Tx, name: str, labels: Mapping[str, str], by: int = 1) -> None:
    """Add `by` to the series now: for a transaction that does nothing else (a refusal)."""
    add(tx, name, labels, by)
    await flush(tx)


async def series(tx: Tx, name: str) -> Sequence[tuple[dict[str, str], int]]:
    """Every series of the counter `name`: its labels and its value (its shards summed)."""
    rows = await tx.rows(_BY_NAME, {"b_name": name})
    return [(labels_of(row["labels"]), int(row["value"])) for row in rows]
