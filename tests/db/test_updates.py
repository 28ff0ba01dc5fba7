"""The worker's hot writes run statements built once per shape, with their values bound: a
transition, a fenced write and a claim still behave as compare-and-set and fencing demand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundry.db import database, leases, runs, schema, updates
from foundry.db.tx import Tx

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)
CLAIM = leases.Claim(schema.runs, [schema.runs.c.status == "intake"], order_by=schema.runs.c.created_at)


@pytest.fixture
def db(db_url: str) -> Any:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


async def open_run(tx: Tx) -> str:
    run = runs.NewRun(str(uuid.uuid4()), str(uuid.uuid4()), "ENG-1", "t", "intake", "label", NOW)
    assert await runs.insert_unless_active(tx, run, runs.NewEvent("opened", NOW), since=NOW, max_recent=10)
    return run.id


async def status(tx: Tx, run_id: str) -> str:
    found = await runs.get(tx, run_id)
    assert found is not None
    return str(found["status"])


def test_transitions_of_one_shape_share_one_statement(db: database.Database) -> None:
    async def two_transitions(tx: Tx) -> list[bool]:
        moved = []
        for _ in range(2):
            run_id = await open_run(tx)
            event = runs.NewEvent("moved", NOW, "foundry")
            moved.append(await runs.transition(tx, run_id, expected="intake", new="planning", event=event))
        return moved

    updates._statement.cache_clear()
    assert db.transaction_sync(two_transitions) == [True, True]
    built = updates._statement.cache_info()
    assert (built.misses, built.hits) == (1, 1)


def test_a_transition_from_another_status_changes_nothing(db: database.Database) -> None:
    async def stale(tx: Tx) -> tuple[bool, str]:
        run_id = await open_run(tx)
        event = runs.NewEvent("moved", NOW, "foundry")
        moved = await runs.transition(tx, run_id, expected="planning", new="approved", event=event)
        return moved, await status(tx, run_id)

    assert db.transaction_sync(stale) == (False, "intake")


def test_a_lease_is_claimed_once_and_a_lapsed_holder_is_fenced_out(db: database.Database) -> None:
    async def scenario(tx: Tx) -> dict[str, Any]:
        run_id = await open_run(tx)
        first = await CLAIM(tx, owner="w1", now=NOW, ttl=TTL)
        assert first is not None
        again = await CLAIM(tx, owner="w2", now=NOW, ttl=TTL)  # held: nothing else to claim
        later = NOW + TTL * 2
        taken = await CLAIM(tx, owner="w2", now=later, ttl=TTL)  # lapsed: taken over
        assert taken is not None
        event = runs.NewEvent("planning", later, "foundry")
        stale = await runs.transition(
            tx, run_id, expected="intake", new="planning", event=event, lease=first[0]
        )
        current = await runs.transition(
            tx, run_id, expected="intake", new="planning", event=event, lease=taken[0]
        )
        return {
            "again": again,
            "epochs": (first[0].epoch, taken[0].epoch),
            "stale": stale,
            "current": current,
            "heartbeat_of_stale": await leases.heartbeat(tx, schema.runs, first[0], now=later, ttl=TTL),
            "released": await leases.release(tx, schema.runs, taken[0], now=later),
        }

    found = db.transaction_sync(scenario)
    assert found == {
        "again": None,
        "epochs": (1, 2),
        "stale": False,
        "current": True,
        "heartbeat_of_stale": False,
        "released": True,
    }
