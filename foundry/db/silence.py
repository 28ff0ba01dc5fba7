"""Agent silence: a run's last sign of life from its agent, and flagging the runs gone quiet.

`agent_seen_at` is set by every dispatch and every report; `silent_flagged_at` is set once per
silence (compare-and-set on it being empty) and cleared by the next sign of life. Runs
dispatched before these columns existed fall back to `updated_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from foundry.db import schema
from foundry.db.tx import Row, Tx
from foundry.domain.statuses import ACTIVE, RunStatus

R = schema.runs
_b = sa.bindparam

# Only a run whose agent holds the job owes us reports. A run with its PR open waits on CI and
# reviewers, and a remediation puts it back in `agent_running` (with a fresh `agent_seen_at`).
WATCHED = (RunStatus.AGENT_RUNNING.value,)
MOVED_ON = tuple(status.value for status in ACTIVE if status.value not in WATCHED)

_LAST_SEEN = sa.func.coalesce(R.c.agent_seen_at, R.c.updated_at)
_QUIET = [R.c.status.in_(WATCHED), R.c.silent_flagged_at.is_(None), _b("b_cutoff") > _LAST_SEEN]
_CANDIDATES = (
    sa.select(R.c.id)
    .where(*_QUIET)
    .order_by(_LAST_SEEN)
    .limit(_b("b_limit"))
    .with_for_update(skip_locked=True)
)
# The conditions again on the row itself: a run another worker flagged (or its agent reported)
# between our read and our write no longer matches, so two workers flag it once.
_FLAG = (
    sa.update(R)
    .where(R.c.id.in_(_CANDIDATES.scalar_subquery()), *_QUIET)
    .values(silent_flagged_at=_b("b_now"))
    .returning(R.c.id, R.c.status, R.c.attempt, R.c.agent_name, _LAST_SEEN.label("last_seen_at"))
)
# Active runs no longer waiting on their agent (its PR came by webhook, say) are not silent now.
_MOVED_ON = (
    sa.update(R)
    .where(R.c.status.in_(MOVED_ON), R.c.silent_flagged_at.is_not(None))
    .values(silent_flagged_at=None)
    .returning(R.c.id)
)
_SEEN = sa.update(R).where(R.c.id == _b("b_run")).values(agent_seen_at=_b("b_now"), silent_flagged_at=None)


def seen_values(now: datetime) -> dict[str, Any]:
    """The columns a sign of life sets, for a write that already updates the run (a dispatch)."""
    return {"agent_seen_at": now, "silent_flagged_at": None}


async def seen(tx: Tx, run_id: str, now: datetime) -> None:
    """The agent reported: its silence, if it was flagged, is over."""
    await tx.rows(_SEEN, {"b_run": run_id, "b_now": now})


async def flag_quiet(tx: Tx, *, now: datetime, cutoff: datetime, limit: int) -> Sequence[Row]:
    """Flag at most `limit` watched runs last heard of before `cutoff` and not flagged yet;
    the runs flagged by this call (id, status, attempt, agent_name, last_seen_at)."""
    return await tx.rows(_FLAG, {"b_now": now, "b_cutoff": cutoff, "b_limit": limit})


async def unflag_moved_on(tx: Tx) -> int:
    """Clear the flag of active runs that left `agent_running` by another road than a report
    (a PR seen by webhook): a flag means silent now. A finished run keeps its flag, as history."""
    return len(await tx.rows(_MOVED_ON))
