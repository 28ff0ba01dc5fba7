"""The figures `/metrics` reports, each at a cost that does not grow with history.

Totals are counters the writing transactions keep (`tallies`); the rest are gauges over live
work only: pending effects (by `ix_outbox_due`) and active runs (by `ix_runs_status_created`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from foundry.db import counters, schema, tallies
from foundry.db import tx as txm
from foundry.db.tx import Tx

R = schema.runs
OUTBOX = schema.outbox

_COUNT = sa.func.count().label("n")
_PENDING = sa.select(_COUNT, sa.func.min(OUTBOX.c.created_at).label("oldest")).where(
    OUTBOX.c.state == "pending"
)
_SILENT = sa.select(_COUNT).where(schema.ACTIVE_RUN, R.c.silent_flagged_at.is_not(None))


async def counted(tx: Tx, name: str, *keys: str) -> Mapping[tuple[str, ...], int]:
    """A kept counter's series: its label values (in `keys` order) → value. Zero-valued series
    (a status every run has left) are kept: a counter's series never disappears."""
    return {tuple(labels.get(k, "") for k in keys): n for labels, n in await counters.series(tx, name)}


async def deliveries_by_verdict(tx: Tx) -> Mapping[tuple[str, str], int]:
    found = await counted(tx, tallies.DELIVERIES, "source", "verdict")
    return {(source, verdict): n for (source, verdict), n in found.items() if n}


async def runs_by_status(tx: Tx) -> Mapping[str, int]:
    return {status: n for (status,), n in (await counted(tx, tallies.RUNS, "status")).items()}


async def transitions_by_status(tx: Tx) -> Mapping[str, int]:
    return {to: n for (to,), n in (await counted(tx, tallies.TRANSITIONS, "to")).items()}


async def outbox_failed_by_kind(tx: Tx) -> Mapping[str, int]:
    return {kind: n for (kind,), n in (await counted(tx, tallies.OUTBOUND_FAILURES, "kind")).items()}


async def outbox_pending(tx: Tx) -> tuple[int, datetime | None]:
    """How many effects wait to be sent, and when the oldest of them was written."""
    row = await txm.first(tx, _PENDING)
    assert row is not None  # an aggregate without GROUP BY always answers one row
    return int(row["n"]), row["oldest"]


async def silent_runs(tx: Tx) -> int:
    """Active runs flagged silent: no agent report for `runs.agent_silence_s`."""
    return int(await txm.scalar(tx, _SILENT))
