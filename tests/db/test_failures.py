"""The last line behind validation at the edge: a value the database refuses is `InvalidValue`
(answered 400), never a raw driver error (a 500) — on both databases, sync and async."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from foundry.db import database, failures, runs, schema
from foundry.db.tx import Tx
from foundry.errors import InvalidValue

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def opened_run(db: database.Database) -> str:
    run = runs.NewRun(str(uuid.uuid4()), "issue-1", "ENG-1", "Title", "agent_running", "label", NOW)
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, runs.NewEvent("opened", NOW), since=NOW, max_recent=9)
    )
    return run.id


def setting(run_id: str, **values: Any) -> Any:
    async def update(tx: Tx) -> None:
        await tx.rows(sa.update(schema.runs).where(schema.runs.c.id == run_id).values(**values))

    return update


REFUSED_EVERYWHERE = [
    pytest.param({"pr_number": 2**70}, id="an int no integer column holds"),
    pytest.param({"title": "a\ud800b"}, id="a lone surrogate"),
]
REFUSED_BY_POSTGRES = [
    pytest.param({"pr_number": 2**31}, id="2^31 in an int4"),
    pytest.param({"title": "a\x00b"}, id="a NUL"),
    pytest.param({"pr_head_sha": "x" * 65}, id="a string longer than its varchar"),
]


@pytest.fixture
def pg(pg_url: str) -> Iterator[database.Database]:
    found = database.Database(pg_url)
    yield found
    found.engine.dispose()


@pytest.mark.parametrize("values", REFUSED_EVERYWHERE)
def test_a_value_neither_database_holds_is_invalid_value(
    db: database.Database, values: dict[str, Any]
) -> None:
    assert_refused(db, values)


@pytest.mark.parametrize("values", REFUSED_BY_POSTGRES)
def test_a_value_postgres_refuses_is_invalid_value(pg: database.Database, values: dict[str, Any]) -> None:
    assert_refused(pg, values)


def assert_refused(db: database.Database, values: dict[str, Any]) -> None:
    """Refused as `InvalidValue` on the synchronous engine and on the async path alike."""
    run_id = opened_run(db)
    with pytest.raises(InvalidValue):
        db.transaction_sync(setting(run_id, **values))

    async def attempt() -> None:
        await db.open()
        try:
            await db.transaction(setting(run_id, **values))
        finally:
            await db.close()

    with pytest.raises(InvalidValue):
        asyncio.run(attempt())


def test_our_own_errors_are_not_taken_for_refused_values() -> None:
    assert isinstance(failures.translate(OverflowError("math range error")), OverflowError)
    assert isinstance(failures.translate(UnicodeEncodeError("ascii", "é", 0, 1, "no")), UnicodeEncodeError)
