"""Counters kept in the database, so that every process adds to, and reports, the same figure.

A series is a name and its labels, stored as the canonical `k=v,k=v` (keys sorted). Label
values are slugs (no `,` or `=`): the names and reasons Foundry chooses, never sender input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema
from foundry.db.tx import Tx

M = schema.metric_counters


def _increment(insert: Any) -> Any:
    stmt = insert(M).values(
        name=sa.bindparam("b_name"), labels=sa.bindparam("b_labels"), value=sa.bindparam("b_by")
    )
    return stmt.on_conflict_do_update(
        index_elements=[M.c.name, M.c.labels], set_={"value": M.c.value + stmt.excluded.value}
    )


_INCREMENT = {"postgresql": _increment(postgresql.insert), "sqlite": _increment(sqlite.insert)}
_BY_NAME = sa.select(M.c.labels, M.c.value).where(M.c.name == sa.bindparam("b_name")).order_by(M.c.labels)


def canonical(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def labels_of(text: str) -> dict[str, str]:
    """The labels a canonical string stands for (the inverse of `canonical`)."""
    return dict(pair.split("=", 1) for pair in text.split(",")) if text else {}


async def increment(tx: Tx, name: str, labels: Mapping[str, str], by: int = 1) -> None:
    """Add `by` to the series, creating it at `by`: one upsert, atomic under any concurrency."""
    await tx.rows(_INCREMENT[tx.dialect], {"b_name": name, "b_labels": canonical(labels), "b_by": by})


async def series(tx: Tx, name: str) -> Sequence[tuple[dict[str, str], int]]:
    """Every series of the counter `name`: its labels and its value."""
    rows = await tx.rows(_BY_NAME, {"b_name": name})
    return [(labels_of(row["labels"]), int(row["value"])) for row in rows]
