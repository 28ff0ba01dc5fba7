"""Silent agents: a dispatched run whose agent has not reported for `runs.agent_silence_s` is
flagged, once per silence, on its timeline (`agent_silent`) and in `/metrics`.

Any number of workers may run this loop: the flag is a compare-and-set on `silent_flagged_at`
being empty, so a silence is flagged once; the agent's next report (or a re-dispatch) clears it,
and a later silence is flagged again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from foundry import logs
from foundry.db import runs, silence
from foundry.db.database import Database
from foundry.db.tx import Row, Tx

log = logs.get("foundry.silence")
Clock = Callable[[], datetime]

# Runs flagged per transaction: bounds how long one pass holds the write lock; a fuller
# backlog is worked through by the passes that follow at once (the loop reports work done).
BATCH = 100
# How often a worker looks when the last look found the backlog cleared. Silence is measured
# in hours; flagging a minute late is noise, and a look per minute per worker costs nothing.
LOOK_EVERY = timedelta(seconds=60)


class Silence:
    def __init__(self, db: Database, *, silence_s: float, clock: Clock, batch: int = BATCH) -> None:
        self._db = db
        self._silence = timedelta(seconds=silence_s)
        self._clock = clock
        self._batch = batch
        self._next_look: datetime | None = None

    def flag_silent_once(self) -> int:
        """Flag the runs gone silent (at most one batch); the number flagged."""
        now = self._clock()
        if self._next_look is not None and now < self._next_look:
            return 0
        flagged = self._db.transaction_sync(lambda tx: self._flag(tx, now))
        if len(flagged) < self._batch:
            self._next_look = now + LOOK_EVERY
        for run in flagged:
            log.warning(
                "run.agent_silent",
                run_id=run["id"],
                agent=run["agent_name"],
                last_seen_at=run["last_seen_at"].isoformat(),
            )
        return len(flagged)

    async def _flag(self, tx: Tx, now: datetime) -> Sequence[Row]:
        await silence.unflag_moved_on(tx)
        flagged = await silence.flag_quiet(tx, now=now, cutoff=now - self._silence, limit=self._batch)
        for run in flagged:
            await runs.append_event(tx, run["id"], _silent_event(run, now))
        return flagged


def _silent_event(run: Row, now: datetime) -> runs.NewEvent:
    last_seen: datetime = run["last_seen_at"]
    data = {
        "agent": run["agent_name"],
        "attempt": run["attempt"],
        "status": run["status"],
        "last_seen_at": last_seen.isoformat(),
        "silent_s": int((now - last_seen).total_seconds()),
    }
    return runs.NewEvent("agent_silent", now, "foundry", data)
