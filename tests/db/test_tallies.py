"""The counters `/metrics` reads are kept by the writing transactions: they always equal what the
tables hold — after every kind of change, under concurrent writers, across a rollback, after a
recount, and straight after the upgrade that introduced them."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from foundry.db import counters, database, deliveries, intake, migrate, outbox, retention, runs, tallies
from foundry.db.tx import Tx
from tests import databases

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=400)
Counts = dict[str, dict[str, int]]


def counted(db: database.Database) -> Counts:
    """Every kept counter as `/metrics` reads it (zero series left out)."""

    async def read(tx: Tx) -> Counts:
        found: Counts = {}
        for name in tallies.KEPT:
            series = await counters.series(tx, name)
            found[name] = {counters.canonical(labels): n for labels, n in series if n}
        return found

    return db.transaction_sync(read, write=False)


def truth(db: database.Database) -> Counts:
    found = db.transaction_sync(tallies.truth, write=False)
    return {name: {k: n for k, n in values.items() if n} for name, values in found.items()}


def new_run(issue: str, at: datetime = NOW) -> tuple[runs.NewRun, runs.NewEvent]:
    run = runs.NewRun(str(uuid.uuid4()), issue, f"ENG-{abs(hash(issue)) % 1000}", "t", "intake", "label", at)
    return run, runs.NewEvent("opened", at, "dana")


def delivery(source: str = "linear", at: datetime = NOW) -> deliveries.NewDelivery:
    key = str(uuid.uuid4())
    return deliveries.NewDelivery(str(uuid.uuid4()), source, key, "Issue.create", at, body_digest=key)


async def open_or_attach(tx: Tx, issue: str, at: datetime = NOW) -> intake.Opening | None:
    run, opened = new_run(issue, at)
    since = at - timedelta(days=1)
    return await intake.open_or_attach(tx, run, opened, delivery(at=at), since=since, max_recent=1000)


async def move(tx: Tx, run_id: str, before: str, after: str) -> bool:
    event = runs.NewEvent("moved", NOW, "foundry")
    return await runs.transition(tx, run_id, expected=before, new=after, event=event)


async def fail_an_effect(tx: Tx, kind: str) -> None:
    await outbox.enqueue(tx, outbox.Effect(str(uuid.uuid4()), kind, {}), now=NOW)
    claimed = await outbox.claim_due(tx, owner="w", now=NOW, ttl=timedelta(seconds=60))
    assert claimed is not None
    await outbox.settle(tx, claimed[0], now=NOW, state="failed", error="gave up")


@pytest.fixture
def db(db_url: str) -> Any:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def test_every_kind_of_change_is_counted_as_the_tables_hold_it(db: database.Database) -> None:
    first = db.transaction_sync(lambda tx: open_or_attach(tx, "issue-1"))
    assert first is not None and first.opened
    again = db.transaction_sync(lambda tx: open_or_attach(tx, "issue-1"))
    assert again == intake.Opening(first.run_id, False)
    db.transaction_sync(lambda tx: open_or_attach(tx, "issue-2", at=LONG_AGO))
    db.transaction_sync(lambda tx: move(tx, first.run_id, "intake", "planning"))
    db.transaction_sync(lambda tx: move(tx, first.run_id, "intake", "planning"))  # did not happen
    db.transaction_sync(lambda tx: move(tx, first.run_id, "planning", "awaiting_approval"))
    stop = runs.NewEvent("stopped", NOW, "dana")
    assert db.transaction_sync(lambda tx: runs.stop_active(tx, "issue-1", stop)) is not None
    assert db.transaction_sync(lambda tx: runs.stop_active(tx, "issue-1", stop)) is None
    ignored = delivery("github")
    db.transaction_sync(lambda tx: deliveries.record(tx, ignored, verdict="ignored", run_id=None))
    db.transaction_sync(lambda tx: deliveries.record(tx, ignored, verdict="ignored", run_id=None))  # dup
    db.transaction_sync(lambda tx: fail_an_effect(tx, "slack_message"))
    pruned = db.transaction_sync(
        lambda tx: retention.prune_deliveries(tx, received_before=NOW - timedelta(days=30), limit=10)
    )
    assert pruned == 1

    assert counted(db) == truth(db)
    assert counted(db) == {
        tallies.DELIVERIES: {
            "source=linear,verdict=opened": 1,
            "source=linear,verdict=attached": 1,
            "source=github,verdict=ignored": 1,
        },
        tallies.RUNS: {"status=stopped": 1, "status=intake": 1},
        tallies.TRANSITIONS: {"to=planning": 1, "to=awaiting_approval": 1, "to=stopped": 1},
        tallies.OUTBOUND_FAILURES: {"kind=slack_message": 1},
    }


def test_a_rolled_back_transaction_counts_nothing(db: database.Database) -> None:
    class Abandon(Exception):
        pass

    async def open_then_fail(tx: Tx) -> None:
        await open_or_attach(tx, "issue-1")
        raise Abandon

    with pytest.raises(Abandon):
        db.transaction_sync(open_then_fail)
    assert counted(db) == truth(db) == {name: {} for name in tallies.KEPT}


def test_concurrent_intake_on_the_async_pool_counts_every_delivery_exactly(pg_url: str) -> None:
    """The web's path: 240 deliveries at once over 24 connections, 12 issues — no lost count and
    no deadlock, though every transaction writes counters (sorted, at commit)."""

    async def storm() -> list[intake.Opening | None]:
        db = database.Database(pg_url, pool_size=24)
        await db.open()
        try:
            jobs = [db.transaction(lambda tx, n=n: open_or_attach(tx, f"issue-{n % 12}")) for n in range(240)]
            return await asyncio.gather(*jobs)
        finally:
            await db.close()

    openings = asyncio.run(storm())
    db = database.Database(pg_url)
    assert sum(1 for o in openings if o is not None and o.opened) == 12
    assert counted(db) == truth(db)
    assert counted(db)[tallies.DELIVERIES] == {
        "source=linear,verdict=opened": 12,
        "source=linear,verdict=attached": 228,
    }
    db.engine.dispose()


def test_threads_moving_runs_and_a_recount_at_once_leave_the_counters_exact(pg_url: str) -> None:
    """Eight threads behind a barrier open, move and stop runs while a ninth recounts: the
    recount neither loses a concurrent change nor counts one twice."""
    db = database.Database(pg_url, pool_size=10)
    barrier, errors = threading.Barrier(9), []

    def writer(n: int) -> None:
        barrier.wait(timeout=30)
        for i in range(25):
            one_step(f"issue-{n}-{i % 5}", stopping=i % 3 == 0)

    def one_step(issue: str, *, stopping: bool) -> None:
        opening = db.transaction_sync(lambda tx: open_or_attach(tx, issue))
        if opening is not None and opening.opened:
            db.transaction_sync(lambda tx: move(tx, opening.run_id, "intake", "planning"))
        elif stopping:
            db.transaction_sync(lambda tx: runs.stop_active(tx, issue, runs.NewEvent("stop", NOW, "d")))

    def recounter() -> None:
        barrier.wait(timeout=30)
        for _ in range(5):
            db.transaction_sync(tallies.recount)

    threads = [threading.Thread(target=_catching(writer, errors), args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=_catching(recounter, errors)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert counted(db) == truth(db)
    assert sum(counted(db)[tallies.DELIVERIES].values()) == 200
    db.engine.dispose()


def _catching(fn: Callable[..., None], errors: list[BaseException]) -> Callable[..., None]:
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    return run


def test_recount_repairs_counters_after_rows_were_edited_by_hand(db: database.Database) -> None:
    db.transaction_sync(lambda tx: open_or_attach(tx, "issue-1"))
    with db.engine.begin() as connection:
        connection.execute(sa.text("UPDATE foundry_runs SET status = 'merged'"))
    assert counted(db) != truth(db)
    db.transaction_sync(tallies.recount)
    assert counted(db) == truth(db)
    assert counted(db)[tallies.RUNS] == {"status=merged": 1}


# --- the upgrade that introduced the counters ----------------------------------------------

_ROWS_AT_0008 = [
    "INSERT INTO foundry_runs (id, linear_issue_id, linear_identifier, title, status, trigger,"
    " required_roles, event_seq, created_at, updated_at) VALUES"
    " ('r1', 'i1', 'ENG-1', 't', 'merged', 'label', '[]', 2, '2026-01-01', '2026-01-01'),"
    " ('r2', 'i2', 'ENG-2', 't', 'planning', 'label', '[]', 2, '2026-01-02', '2026-01-02')",
    "INSERT INTO run_events (id, run_id, seq, kind, data, created_at) VALUES"
    " ('e1', 'r1', 1, 'opened', '{}', '2026-01-01'),"
    " ('e2', 'r1', 2, 'transition', '{\"from\": \"pr_open\", \"to\": \"merged\"}', '2026-01-01'),"
    " ('e3', 'r2', 2, 'transition', '{\"from\": \"intake\", \"to\": \"planning\"}', '2026-01-02')",
    "INSERT INTO webhook_deliveries (id, source, delivery_key, event, verdict, received_at) VALUES"
    " ('d1', 'linear', 'k1', 'Issue.create', 'opened', '2026-01-01'),"
    " ('d2', 'linear', 'k2', 'Issue.create', 'opened', '2026-01-02'),"
    " ('d3', 'github', 'k3', 'ping', 'ignored', '2026-01-02')",
    "INSERT INTO outbox (id, effect_key, kind, payload, state, attempts, next_attempt_at, created_at)"
    " VALUES ('o1', 'k1', 'linear_comment', '{}', 'failed', 10, '2026-01-01', '2026-01-01'),"
    " ('o2', 'k2', 'linear_comment', '{}', 'sent', 1, '2026-01-01', '2026-01-01')",
    "INSERT INTO metric_counters (name, labels, value) VALUES"
    " ('foundry_deliveries_refused', 'reason=bad_signature,source=linear', 7)",
]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_upgrade_starts_the_counters_from_what_the_tables_hold(
    kind: str, tmp_path: Path, postgres_templates: databases.PostgresTemplates
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else postgres_templates.empty()
    try:
        command.upgrade(migrate.alembic_config(url), "0008")
        engine = database.make_engine(url)
        with engine.begin() as connection:
            for statement in _ROWS_AT_0008:
                connection.execute(sa.text(statement))
        engine.dispose()
        migrate.upgrade(url)
        db = database.Database(url)
        assert (
            counted(db)
            == truth(db)
            == {
                tallies.DELIVERIES: {"source=linear,verdict=opened": 2, "source=github,verdict=ignored": 1},
                tallies.RUNS: {"status=merged": 1, "status=planning": 1},
                tallies.TRANSITIONS: {"to=merged": 1, "to=planning": 1},
                tallies.OUTBOUND_FAILURES: {"kind=linear_comment": 1},
            }
        )
        refused = db.transaction_sync(lambda tx: counters.series(tx, "foundry_deliveries_refused"))
        assert refused == [({"reason": "bad_signature", "source": "linear"}, 7)]
        db.engine.dispose()
    finally:
        if kind == "postgres":
            postgres_templates.drop(url)
