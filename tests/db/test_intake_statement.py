"""On Postgres, intake is one statement for every tracker: each tracker's runs conflict on their
own partial unique index, and the statement names that index as its arbiter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from foundry.db import database, deliveries, runs
from foundry.db import intake as intake_store

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _open(db: database.Database, tracker: str, issue_id: str, key: str) -> intake_store.Opening | None:
    run = runs.NewRun(str(uuid.uuid4()), issue_id, key, "t", "intake", "label", NOW, tracker=tracker)
    said = str(uuid.uuid4())
    delivery = deliveries.NewDelivery(str(uuid.uuid4()), tracker, said, "opened", NOW, body_digest=said)
    opened = runs.NewEvent("opened", NOW)
    since = NOW - timedelta(days=1)
    return db.transaction_sync(
        lambda tx: intake_store.open_or_attach(tx, run, opened, delivery, since=since, max_recent=10)
    )


@pytest.mark.parametrize(
    ("tracker", "issue_id", "key"), [("linear", "issue-1", "ENG-1"), ("github", "I_kw1", "acme/widgets#1")]
)
def test_opening_and_attaching_are_one_statement_each(
    pg_url: str, tracker: str, issue_id: str, key: str
) -> None:
    db = database.Database(pg_url)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "foundry_runs" in statement:
            statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    first = _open(db, tracker, issue_id, key)
    second = _open(db, tracker, issue_id, key)
    sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert first is not None and second is not None
    assert (first.opened, second.opened, second.run_id) == (True, False, first.run_id)
    assert len(statements) == 2 and all(s.lstrip().startswith("WITH run AS") for s in statements)
    db.engine.dispose()
