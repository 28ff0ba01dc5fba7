"""The SQLite writer of an async app commits the transactions queued meanwhile together: one
COMMIT for the group, each transaction's failure its own, nothing answered before the COMMIT.

Groups are formed deterministically: the first transaction holds the writer thread (it waits on
an event inside its own transaction) while the others queue; releasing it lets them form one group.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from foundry.db import counters, database, group_commit
from foundry.db.tx import Tx
from foundry.domain import events, triggers
from foundry.services.intake import Delivery, Intake, IntakeResult
from tests import databases

WAIT_S = 30.0
TxFn = Callable[[Tx], Coroutine[Any, Any, Any]]
ISSUE = events.IssueRef("issue-1", "ENG-1", "Group me")
ACTOR = events.Actor("u1", "Dana", "dana@example.com")
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Oops(Exception):
    pass


@pytest.fixture
def url(tmp_path: Path, sqlite_templates: databases.SqliteTemplates) -> str:
    return sqlite_templates.clone(tmp_path)


def on_open_database(url: str, scenario: Callable[[database.Database], Awaitable[None]]) -> database.Database:
    """Run `scenario` on the database opened for an async app (its writer thread running)."""
    db = database.Database(url)

    async def main() -> None:
        await db.open()
        try:
            await scenario(db)
        finally:
            await db.close()

    asyncio.run(main())
    return db


def commits_of(db: database.Database) -> list[int]:
    """Counts the COMMITs the engine runs (one list element per COMMIT)."""
    seen: list[int] = []

    @event.listens_for(db.engine, "commit")
    def _commit(connection: sa.Connection) -> None:
        seen.append(1)

    return seen


def count(who: str, *, fail: bool = False) -> TxFn:
    async def write(tx: Tx) -> str:
        counters.add(tx, "writes", {"who": who})
        await counters.flush(tx)  # written now, so that a failure below has something to undo
        if fail:
            raise Oops(who)
        return who

    return write


def total(db: database.Database) -> dict[str, int]:
    async def read(tx: Tx) -> dict[str, int]:
        return {labels["who"]: n for labels, n in await counters.series(tx, "writes")}

    return db.transaction_sync(read, write=False)


async def held_writer(db: database.Database) -> tuple[asyncio.Future[Any], threading.Event]:
    """A transaction that holds the writer thread until the returned event is set."""
    entered, release = threading.Event(), threading.Event()

    async def hold(tx: Tx) -> str:
        entered.set()
        release.wait(WAIT_S)
        return "held"

    holding = asyncio.ensure_future(db.transaction(hold))
    assert await asyncio.to_thread(entered.wait, WAIT_S)
    return holding, release


async def in_one_group(
    db: database.Database,
    transactions: list[Coroutine[Any, Any, Any]],
    *,
    futures: list[asyncio.Future[Any]] | None = None,
) -> list[Any]:
    """Start `transactions` (coroutines that each write through `db`) behind a held writer, so
    that they form one group (or as few as `MAX_BATCH` allows), and their outcomes: a result, or
    the exception of one that failed. `futures` is filled before the writer is released."""
    holding, release = await held_writer(db)
    queued = [asyncio.ensure_future(transaction) for transaction in transactions]
    if futures is not None:
        futures.extend(queued)
    # One turn of the loop: each task runs to its first await, its submission to the writer.
    await asyncio.sleep(0)
    release.set()
    assert await holding == "held"
    return await asyncio.gather(*queued, return_exceptions=True)


def test_transactions_queued_meanwhile_share_one_commit(url: str) -> None:
    on_open_database(url, queued_meanwhile_share_one_commit)


async def queued_meanwhile_share_one_commit(db: database.Database) -> None:
    commits = commits_of(db)
    assert await in_one_group(db, [db.transaction(count(f"w{n}")) for n in range(20)]) == [
        f"w{n}" for n in range(20)
    ]
    assert len(commits) == 2  # the holder alone, then the twenty together
    assert total(db) == {f"w{n}": 1 for n in range(20)}


def test_a_failing_transaction_rolls_back_alone(url: str) -> None:
    on_open_database(url, failing_transaction_rolls_back_alone)


async def failing_transaction_rolls_back_alone(db: database.Database) -> None:
    outcomes = await in_one_group(db, [db.transaction(count(f"w{n}", fail=n % 4 == 0)) for n in range(12)])
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Oops)]
    assert failed == [0, 4, 8]
    assert total(db) == {f"w{n}": 1 for n in range(12) if n % 4}


def test_nothing_is_answered_before_the_commit_and_a_failed_commit_fails_the_group(url: str) -> None:
    on_open_database(url, answered_after_commit_and_failed_together)


async def answered_after_commit_and_failed_together(db: database.Database) -> None:
    queued: list[asyncio.Future[Any]] = []
    answered_at_commit: list[bool] = []

    @event.listens_for(db.engine, "commit")
    def _commit(connection: sa.Connection) -> None:
        answered_at_commit.append(any(future.done() for future in queued))
        if len(answered_at_commit) == 2:  # the group's COMMIT (the holder's was the first)
            raise OSError("disk I/O error")

    # A failure too waits for the COMMIT: it may rest on what an earlier member wrote (a
    # delivery found already recorded), which the failed COMMIT then undoes.
    outcomes = await in_one_group(
        db, [db.transaction(count(f"w{n}", fail=n == 2)) for n in range(5)], futures=queued
    )
    assert answered_at_commit == [False, False]
    assert all(isinstance(outcome, OSError) for outcome in outcomes), outcomes
    assert total(db) == {}


def test_groups_are_bounded(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_commit, "MAX_BATCH", 4)
    on_open_database(url, groups_of_four)


async def groups_of_four(db: database.Database) -> None:
    commits = commits_of(db)
    await in_one_group(db, [db.transaction(count(f"w{n}")) for n in range(10)])
    assert len(commits) == 1 + 3  # 4 + 4 + 2
    assert sum(total(db).values()) == 10


def test_close_finishes_what_was_queued(url: str) -> None:
    db = database.Database(url)

    async def main() -> list[str]:
        await db.open()
        holding, release = await held_writer(db)
        queued = [asyncio.ensure_future(db.transaction(count(f"w{n}"))) for n in range(6)]
        await asyncio.sleep(0)
        release.set()
        await db.close()
        return await asyncio.gather(holding, *queued)

    assert asyncio.run(main()) == ["held"] + [f"w{n}" for n in range(6)]
    assert sum(total(db).values()) == 6
    db.engine.dispose()


def test_copies_of_one_delivery_in_one_group_all_name_its_run(url: str) -> None:
    """The copies after the first find it recorded by the same group, still uncommitted: their
    `duplicate` is answered after the COMMIT, with the run the first one opened."""
    outcomes: list[IntakeResult] = []

    async def copies(db: database.Database) -> None:
        intake = Intake(db, approvers=(), max_runs_per_day=10)
        intent = triggers.OpenRun(ISSUE, "label", ACTOR)
        delivery = Delivery("linear", "delivery-1", "Issue.create", NOW, digest="d1")
        outcomes.extend(await in_one_group(db, [intake.handle(delivery, intent) for _ in range(5)]))

    on_open_database(url, copies)
    assert [o.outcome for o in outcomes] == ["opened"] + ["duplicate"] * 4
    assert len({o.run_id for o in outcomes}) == 1 and outcomes[0].run_id is not None
