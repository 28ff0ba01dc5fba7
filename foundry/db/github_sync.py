"""The reconcilers' queries: claiming runs due for a GitHub read, reading the runs the Linear
reconciler follows, and what the redelivery sweeper must not ask for twice.

A GitHub read is claimed by compare-and-set on `github_synced_at`: one `UPDATE … WHERE
(github_synced_at IS NULL OR github_synced_at <= :due) RETURNING`, its candidate chosen
`FOR UPDATE SKIP LOCKED` on Postgres (SQLite's write lock serialises claimers anyway). Two
workers never claim the same run in one interval, however many run the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx
from foundry.domain.statuses import ACTIVE, RunStatus

R = schema.runs
OUTBOX = schema.outbox
D = schema.deliveries

# The runs whose PR may change under them: the agent is opening it, or it is open.
FOLLOWED = (RunStatus.AGENT_RUNNING, RunStatus.PR_OPEN, RunStatus.REVIEW_REQUIRED)


def _due(due_before: Any) -> Any:
    return sa.or_(R.c.github_synced_at.is_(None), R.c.github_synced_at <= due_before)


_FOLLOWED = R.c.status.in_([s.value for s in FOLLOWED])
_CANDIDATE = (
    sa.select(R.c.id)
    .where(_FOLLOWED, _due(sa.bindparam("b_due")))
    .order_by(sa.nulls_first(R.c.github_synced_at), R.c.created_at)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
# The condition is repeated outside the subquery: that is the compare-and-set (on Postgres a
# claimer that waited on the row re-checks it against the committed stamp, and finds it fresh).
_CLAIM = (
    sa.update(R)
    .where(R.c.id == _CANDIDATE, _FOLLOWED, _due(sa.bindparam("b_due")))
    .values(github_synced_at=sa.bindparam("b_now"))
    .returning(*R.columns)
)


async def claim_due(tx: Tx, *, now: datetime, due_before: datetime) -> Row | None:
    """Stamp and return the followed run read longest ago (never-read first), if one is due."""
    return await txm.first(tx, _CLAIM, {"b_now": now, "b_due": due_before})


async def active_runs(tx: Tx, *, limit: int, tracker: str) -> Sequence[Row]:
    """The tracker's active runs, oldest first: the ones whose issue its reconciler looks at."""
    stmt = (
        sa.select(R)
        .where(R.c.status.in_([s.value for s in ACTIVE]), R.c.tracker == tracker)
        .order_by(R.c.created_at, R.c.id)
        .limit(limit)
    )
    return await tx.rows(stmt)


async def dispatched_repository(tx: Tx, run_id: str) -> str | None:
    """The repository the run's latest job named, if its job named one."""
    stmt = (
        sa.select(OUTBOX.c.payload)
        # `services.effects.AGENT_DISPATCH`: a job, whose payload carries it under "job".
        .where(OUTBOX.c.run_id == run_id, OUTBOX.c.kind == "agent_dispatch")
        .order_by(OUTBOX.c.created_at.desc())
        .limit(1)
    )
    payload = await txm.scalar(tx, stmt)
    job = payload.get("job") if isinstance(payload, dict) else None
    found = job.get("repository") if isinstance(job, dict) else None
    return found if isinstance(found, str) and found else None


async def recorded_keys(tx: Tx, source: str, keys: Sequence[str]) -> set[str]:
    """Which of these delivery keys were recorded for `source`."""
    if not keys:
        return set()
    stmt = sa.select(D.c.delivery_key).where(D.c.source == source, D.c.delivery_key.in_(list(keys)))
    return {str(row["delivery_key"]) for row in await tx.rows(stmt)}
