"""Retention: the worker deletes what has outlived its purpose, a bounded batch at a time.

Two kinds of row only grow: inbound deliveries (kept so a redelivery is recognised) and
idempotency keys (kept so a repeated `POST` replays). `prune_once()` deletes those past their
window, at most `batch` of each per call, each batch in its own short transaction. A pass that
cleared everything rests for `interval`; a pass that came back with a full batch did not, so
the next call continues at once — a backlog (a first deploy, a worker that was down for days)
drains in short transactions, between the other loops' work, instead of one long one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from foundry import logs
from foundry.db import retention
from foundry.db.database import Database

log = logs.get("foundry.retention")
Clock = Callable[[], datetime]

# 14 days: well past the longest window in which any sender we accept can redeliver (GitHub
# lets an admin redeliver for 3 days, GitHub Enterprise Server for 7; Linear and Slack retry
# within hours), so a delivery is never forgotten while its copy could still arrive; and two
# weeks of history is what an operator looks back over in `foundry deliveries list` and `/`.
DELIVERY_RETENTION = timedelta(days=14)
# 1,000 rows: an indexed delete of this many takes milliseconds on either database, so a prune
# never holds SQLite's write lock (or Postgres's row locks) long enough to delay a webhook.
BATCH = 1000
# 10 minutes: retention is counted in days, so tables stay within minutes of their window, for
# two indexed queries per interval.
INTERVAL = timedelta(minutes=10)


class Retention:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        interval: timedelta = INTERVAL,
        batch: int = BATCH,
        keep_deliveries: timedelta = DELIVERY_RETENTION,
    ) -> None:
        self._db = db
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._keep_deliveries = keep_deliveries
        # When a pass last caught up; None until the first one does (so the first call prunes).
        self._caught_up_at: datetime | None = None

    def prune_once(self) -> int:
        """Delete one batch of each kind, unless the last pass caught up under `interval` ago."""
        now = self._clock()
        if self._caught_up_at is not None and now - self._caught_up_at < self._interval:
            return 0
        deliveries = self._db.transaction_sync(
            lambda tx: retention.prune_deliveries(
                tx, received_before=now - self._keep_deliveries, limit=self._batch
            )
        )
        keys = self._db.transaction_sync(
            lambda tx: retention.prune_idempotency_keys(tx, expired_by=now, limit=self._batch)
        )
        if deliveries < self._batch and keys < self._batch:
            self._caught_up_at = now
        if deliveries or keys:
            log.info("retention.pruned", deliveries=deliveries, idempotency_keys=keys)
        return deliveries + keys
