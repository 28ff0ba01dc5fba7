"""The migrated schema is the models, and the database itself refuses a second active run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from foundry.db import database, runs, schema
from foundry.db import tx as tx_module
from foundry.db.tx import drive
from foundry.errors import UniqueViolation

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def insert_run(
    db: database.Database, run_id: str, status: str, issue: str = "issue-1", tracker: str = "linear"
) -> None:
    row = run_row(run_id, status, issue, tracker)
    db.transaction_sync(lambda tx: tx.rows(sa.insert(schema.runs), row))


def run_row(run_id: str, status: str, issue: str = "issue-1", tracker: str = "linear") -> dict[str, Any]:
    """A run's row, inserted by hand: the identity its tracker gives it."""
    linear = tracker == "linear"
    key = "ENG-1" if linear else "acme/widgets#1"
    return {
        "id": run_id,
        "tracker": tracker,
        "issue_id": issue,
        "issue_key": key,
        "linear_issue_id": issue if linear else None,
        "linear_identifier": key if linear else None,
        "title": "t",
        "status": status,
        "trigger": "label",
        "required_roles": [],
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    engine = database.make_engine(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), schema.metadata)
    engine.dispose()
    assert diff == []


def test_the_partial_index_exists_with_its_predicate(db_url: str) -> None:
    engine = database.make_engine(db_url)
    with engine.connect() as connection:
        indexes = {i["name"]: i for i in sa.inspect(connection).get_indexes("foundry_runs")}
    engine.dispose()
    index = indexes["uniq_active_run_per_issue"]
    assert index["unique"]
    assert index["column_names"] == ["linear_issue_id"]
    where = str(index.get("dialect_options", {}).get(f"{engine.dialect.name}_where", ""))
    assert "awaiting_approval" in where and "merged" not in where


def test_two_active_runs_for_one_issue_cannot_be_inserted_even_by_hand(db_url: str) -> None:
    db = database.Database(db_url)
    insert_run(db, "run-a", "intake")
    with pytest.raises(UniqueViolation) as refused:
        insert_run(db, "run-b", "pr_open")
    assert refused.value.constraint == "uniq_active_run_per_issue"
    db.engine.dispose()


def test_another_trackers_issue_is_held_to_one_active_run_by_its_own_index(db_url: str) -> None:
    db = database.Database(db_url)
    insert_run(db, "github-a", "intake", tracker="github")
    insert_run(db, "linear-a", "intake")  # the same id in another tracker is another issue
    with pytest.raises(UniqueViolation) as refused:
        insert_run(db, "github-b", "awaiting_approval", tracker="github")
    assert refused.value.constraint == "uniq_active_run_per_tracker_issue"
    insert_run(db, "github-c", "merged", tracker="github")
    assert drive_count(db) == 3
    db.engine.dispose()


@pytest.mark.parametrize(
    "row",
    [
        {"linear_issue_id": None},  # a Linear run without its Linear id
        {"linear_identifier": "ENG-2"},  # … or with a second identity
        {"tracker": "github"},  # another tracker's run carrying Linear's columns
    ],
)
def test_each_run_has_exactly_one_shape_of_identity(db_url: str, row: dict[str, object]) -> None:
    db = database.Database(db_url)
    good = run_row("run-a", "intake")
    with pytest.raises(sa.exc.IntegrityError, match=r"ck_runs_tracker_identity|CHECK constraint failed"):
        db.transaction_sync(lambda tx: tx.rows(sa.insert(schema.runs), {**good, **row}))
    assert drive_count(db) == 0
    db.engine.dispose()


def test_terminal_runs_do_not_count_against_the_index(db_url: str) -> None:
    db = database.Database(db_url)
    for n, status in enumerate(["stopped", "merged", "failed", "intake"]):
        insert_run(db, f"run-{n}", status)
    assert drive_count(db) == 4
    db.engine.dispose()


def drive_count(db: database.Database) -> int:
    stmt = sa.select(sa.func.count()).select_from(schema.runs)
    return int(db.transaction_sync(lambda tx: tx_module.scalar(tx, stmt)))


def test_a_second_identical_delivery_key_is_refused_by_name(db_url: str) -> None:
    db = database.Database(db_url)
    row = {
        "id": "d1",
        "source": "linear",
        "delivery_key": "k",
        "event": "Issue.create",
        "verdict": "opened",
        "received_at": NOW,
    }
    db.transaction_sync(lambda tx: tx.rows(sa.insert(schema.deliveries), row))
    with pytest.raises(UniqueViolation) as refused:
        db.transaction_sync(lambda tx: tx.rows(sa.insert(schema.deliveries), {**row, "id": "d2"}))
    assert refused.value.constraint == "uniq_delivery_per_source"
    db.engine.dispose()


def test_a_transition_is_compare_and_set(db_url: str) -> None:
    db = database.Database(db_url)
    insert_run(db, "run-a", "intake")
    event = runs.NewEvent("planning", NOW)

    def move(expected: str) -> bool:
        return db.transaction_sync(
            lambda tx: runs.transition(tx, "run-a", expected=expected, new="planning", event=event)
        )

    assert move("intake") is True
    assert move("intake") is False
    story = db.transaction_sync(lambda tx: runs.timeline(tx, "run-a"))
    assert [(e["seq"], e["data"]["from"], e["data"]["to"]) for e in story] == [(1, "intake", "planning")]
    db.engine.dispose()


def test_drive_refuses_a_coroutine_that_really_suspends() -> None:
    import asyncio

    with pytest.raises(RuntimeError):
        drive(asyncio.sleep(0.01))
