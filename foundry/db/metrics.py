"""The figures `/metrics` reports, each one aggregate query over the tables that hold the truth."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx

D = schema.deliveries
R = schema.runs
E = schema.run_events
OUTBOX = schema.outbox

_COUNT = sa.func.count().label("n")
_DELIVERIES = sa.select(D.c.source, D.c.verdict, _COUNT).group_by(D.c.source, D.c.verdict)
_RUNS = sa.select(R.c.status, _COUNT).group_by(R.c.status)
# A transition's event carries {"from", "to"} (see `runs.transition` and `runs.stop_active`); grouping
# on the extracted value through a subquery keeps one JSON expression, not one per clause.
_TO = sa.select(E.c.data["to"].as_string().label("to")).subquery()
_TRANSITIONS = sa.select(_TO.c.to, _COUNT).where(_TO.c.to.is_not(None)).group_by(_TO.c.to)
_PENDING = sa.select(_COUNT, sa.func.min(OUTBOX.c.created_at).label("oldest")).where(
    OUTBOX.c.state == "pending"
)
_FAILED = sa.select(OUTBOX.c.kind, _COUNT).where(OUTBOX.c.state == "failed").group_by(OUTBOX.c.kind)
# Active runs only (through `ix_runs_status`), so the cost follows the live runs, not history.
_SILENT = sa.select(_COUNT).where(schema.ACTIVE_RUN, R.c.silent_flagged_at.is_not(None))


async def deliveries_by_verdict(tx: Tx) -> Sequence[Row]:
    """Rows of (source, verdict, n)."""
    return await tx.rows(_DELIVERIES)


async def runs_by_status(tx: Tx) -> Sequence[Row]:
    """Rows of (status, n)."""
    return await tx.rows(_RUNS)


async def transitions_by_status(tx: Tx) -> Sequence[Row]:
    """Rows of (to, n): timeline events that moved a run, by the status they moved it to."""
    return await tx.rows(_TRANSITIONS)


async def outbox_pending(tx: Tx) -> tuple[int, datetime | None]:
    """How many effects wait to be sent, and when the oldest of them was written."""
    row = await txm.first(tx, _PENDING)
    assert row is not None  # an aggregate without GROUP BY always answers one row
    return int(row["n"]), row["oldest"]


async def outbox_failed_by_kind(tx: Tx) -> Sequence[Row]:
    """Rows of (kind, n): effects that were given up on."""
    return await tx.rows(_FAILED)


async def silent_runs(tx: Tx) -> int:
    """Active runs flagged silent: no agent report for `runs.agent_silence_s`."""
    return int(await txm.scalar(tx, _SILENT))
