"""A worker paused past its lease can no longer change the run, whoever holds it now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from foundry.db import database, leases, outbox, runs, schema
from tests.worker.conftest import Clock, status


def planned_events(db: database.Database, run_id: str) -> int:
    return sum(e["kind"] == "planned" for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id)))


def effects_for(db: database.Database, run_id: str) -> int:
    return len(db.transaction_sync(lambda tx: outbox.for_run(tx, run_id)))


def test_a_paused_worker_cannot_write_after_another_took_its_run_over(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any], clock: Clock
) -> None:
    run_id = open_run()
    paused, other = make_planning(owner="paused", lease_s=60), make_planning(owner="other", lease_s=60)
    claimed = paused.claim()
    assert claimed is not None
    lease, run = claimed
    clock.advance(61)  # the paused worker misses its heartbeats; its lease expires
    assert other.plan_once() == 1  # takes the run over (epoch + 1) and plans it
    assert status(db, run_id)["lease_epoch"] == lease.epoch + 1
    before = (planned_events(db, run_id), effects_for(db, run_id))

    outcome = paused.decide(run)  # the paused worker wakes up and finishes its work...
    assert paused.finish(lease, run, outcome) is False  # ...and is fenced off
    held = db.transaction_sync(
        lambda tx: leases.heartbeat(tx, schema.runs, lease, now=clock(), ttl=timedelta(seconds=60))
    )
    assert held is False
    assert (planned_events(db, run_id), effects_for(db, run_id)) == before == (1, 2)
    assert status(db, run_id)["status"] == "awaiting_approval"


def test_an_expired_lease_cannot_write_even_when_nobody_took_over(
    db: database.Database, open_run: Callable[..., str], make_planning: Callable[..., Any], clock: Clock
) -> None:
    run_id = open_run()
    worker = make_planning(owner="slow", lease_s=60)
    claimed = worker.claim()
    assert claimed is not None
    lease, run = claimed
    clock.advance(61)
    assert worker.finish(lease, run, worker.decide(run)) is False
    assert status(db, run_id)["status"] == "planning"
    assert effects_for(db, run_id) == 0
    assert make_planning(owner="next").plan_once() == 1  # an expired lease is taken over
    assert status(db, run_id)["status"] == "awaiting_approval"


def test_a_live_lease_is_not_taken_over(
    open_run: Callable[..., str], make_planning: Callable[..., Any], clock: Clock
) -> None:
    open_run()
    assert make_planning(owner="a").claim() is not None
    clock.advance(59)
    assert make_planning(owner="b").claim() is None
