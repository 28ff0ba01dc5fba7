"""Retention: deliveries older than 14 days and expired idempotency keys go, a bounded batch at a time,
at most every interval once caught up."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from foundry import wiring
from foundry.db import database, deliveries, idempotency
from foundry.db.deliveries import NewDelivery
from foundry.services.retention import Retention
from foundry.settings import Settings
from tests.worker.conftest import Clock

DAY = 24 * 3600


def receive(db: database.Database, clock: Clock, *, age_s: float, count: int = 1) -> None:
    """Record `count` deliveries received `age_s` seconds before the clock's now."""
    for _ in range(count):
        key = str(uuid.uuid4())
        received = NewDelivery(key, "linear", key, "Issue.create", clock() - timedelta(seconds=age_s))
        db.transaction_sync(lambda tx, d=received: deliveries.record(tx, d, verdict="opened", run_id=None))


def reserve(db: database.Database, clock: Clock, key: str, *, ttl_s: float) -> None:
    db.transaction_sync(
        lambda tx: idempotency.reserve(
            tx,
            "POST /api/runs/{id}/approve",
            key,
            fingerprint="f",
            holder="h",
            now=clock(),
            lock=timedelta(seconds=30),
            ttl=timedelta(seconds=ttl_s),
        )
    )


def count(db: database.Database, table: str) -> int:
    with db.engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def test_deliveries_older_than_fourteen_days_are_pruned_and_younger_ones_kept(
    db: database.Database, clock: Clock
) -> None:
    receive(db, clock, age_s=14 * DAY + 1, count=2)
    receive(db, clock, age_s=14 * DAY)  # exactly at the edge: still inside the window
    receive(db, clock, age_s=60)
    assert Retention(db, clock=clock).prune_once() == 2
    assert count(db, "webhook_deliveries") == 2


def test_idempotency_keys_are_pruned_once_expired(db: database.Database, clock: Clock) -> None:
    reserve(db, clock, "old", ttl_s=3600)
    reserve(db, clock, "young", ttl_s=24 * 3600)
    clock.advance(2 * 3600)
    assert Retention(db, clock=clock).prune_once() == 1
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT key FROM idempotency_keys").scalars().all() == ["young"]


def test_each_call_deletes_at_most_one_batch_and_a_backlog_continues_without_waiting(
    db: database.Database, clock: Clock
) -> None:
    receive(db, clock, age_s=20 * DAY, count=7)
    pruner = Retention(db, clock=clock, batch=3)
    assert [pruner.prune_once() for _ in range(4)] == [3, 3, 1, 0]
    assert count(db, "webhook_deliveries") == 0


def test_once_caught_up_it_rests_for_the_interval(db: database.Database, clock: Clock) -> None:
    pruner = Retention(db, clock=clock, interval=timedelta(minutes=10))
    assert pruner.prune_once() == 0  # nothing to do: caught up now
    receive(db, clock, age_s=15 * DAY)
    clock.advance(9 * 60 + 59)
    assert pruner.prune_once() == 0  # resting: the old delivery waits
    assert count(db, "webhook_deliveries") == 1
    clock.advance(1)
    assert pruner.prune_once() == 1
    assert count(db, "webhook_deliveries") == 0


def test_the_worker_runs_retention(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    container = wiring.build(settings)
    loops = wiring.worker_loops(settings, container.db, "worker-a")
    assert "prune_once" in [getattr(loop, "__name__", "") for loop in loops]
    container.db.engine.dispose()
