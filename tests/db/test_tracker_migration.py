"""0010 gives every run a tracker identity and carries Linear's runs over untouched.

On SQLite the upgrade rebuilds `foundry_runs`, a table three others refer to: the rows that
refer to it must survive, still refer to it, and still be checked after the upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from foundry.db import database, migrate, runs
from foundry.errors import UniqueViolation
from tests import databases
from tests.db.test_schema import insert_run

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

_ROWS_AT_0009 = [
    "INSERT INTO foundry_runs (id, linear_issue_id, linear_identifier, title, status, trigger,"
    " required_roles, event_seq, created_at, updated_at) VALUES"
    " ('r1', 'i1', 'ENG-1', 'old', 'merged', 'label', '[]', 2, '2026-01-01', '2026-01-01'),"
    " ('r2', 'i1', 'ENG-1', 'again', 'awaiting_approval', 'label', '[]', 1, '2026-01-02', '2026-01-02'),"
    " ('r3', 'i2', 'ENG-2', 'other', 'planning', 'comment', '[]', 1, '2026-01-03', '2026-01-03')",
    "INSERT INTO run_events (id, run_id, seq, kind, data, created_at) VALUES"
    " ('e1', 'r1', 1, 'opened', '{}', '2026-01-01'), ('e2', 'r2', 1, 'opened', '{}', '2026-01-02')",
    "INSERT INTO webhook_deliveries (id, source, delivery_key, event, verdict, run_id, received_at)"
    " VALUES ('d1', 'linear', 'k1', 'Issue.create', 'opened', 'r1', '2026-01-01')",
    "INSERT INTO outbox (id, effect_key, kind, run_id, payload, state, attempts, next_attempt_at,"
    " created_at) VALUES ('o1', 'k1', 'linear_comment', 'r2', '{}', 'pending', 0, '2026-01-02',"
    " '2026-01-02')",
]
_RUNS = "SELECT id, linear_issue_id, linear_identifier, title, status, trigger FROM foundry_runs ORDER BY id"


@pytest.fixture(params=["sqlite", "postgres"])
def url_at_0009(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_templates: databases.PostgresTemplates
) -> Iterator[str]:
    kind = request.param
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else postgres_templates.empty()
    try:
        command.upgrade(migrate.alembic_config(url), "0009")
        with _engine(url) as engine, engine.begin() as connection:
            for statement in _ROWS_AT_0009:
                connection.execute(sa.text(statement))
        yield url
    finally:
        if kind == "postgres":
            postgres_templates.drop(url)


class _engine:
    def __init__(self, url: str) -> None:
        self.engine = database.make_engine(url)

    def __enter__(self) -> sa.Engine:
        return self.engine

    def __exit__(self, *_: object) -> None:
        self.engine.dispose()


def _read(url: str, query: str) -> list[tuple[object, ...]]:
    with _engine(url) as engine, engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(query))]


def test_linear_runs_are_carried_over_with_their_index(url_at_0009: str) -> None:
    before = _read(url_at_0009, _RUNS)
    migrate.upgrade(url_at_0009)
    assert _read(url_at_0009, _RUNS) == before
    identity = _read(url_at_0009, "SELECT id, tracker, issue_id, issue_key FROM foundry_runs ORDER BY id")
    assert identity == [
        ("r1", "linear", "i1", "ENG-1"),
        ("r2", "linear", "i1", "ENG-1"),
        ("r3", "linear", "i2", "ENG-2"),
    ]
    assert _read(url_at_0009, "SELECT count(*) FROM run_events") == [(2,)]
    assert _read(url_at_0009, "SELECT run_id FROM webhook_deliveries") == [("r1",)]
    assert _read(url_at_0009, "SELECT run_id FROM outbox") == [("r2",)]
    with _engine(url_at_0009) as engine, engine.connect() as connection:
        index = {i["name"]: i for i in sa.inspect(connection).get_indexes("foundry_runs")}
        dialect = engine.dialect.name
    kept = index["uniq_active_run_per_issue"]
    assert kept["unique"] and kept["column_names"] == ["linear_issue_id"]
    assert "awaiting_approval" in str(kept.get("dialect_options", {}).get(f"{dialect}_where"))
    _the_index_still_refuses_a_second_active_run(url_at_0009)
    _references_are_still_checked(url_at_0009)


def _the_index_still_refuses_a_second_active_run(url: str) -> None:
    db = database.Database(url)
    run = runs.NewRun("r4", "i1", "ENG-1", "t", "intake", "label", NOW)
    opened = runs.NewEvent("opened", NOW)
    inserted = db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=NOW, max_recent=10)
    )
    assert inserted is False  # r2 is the issue's active run
    with pytest.raises(UniqueViolation) as refused:
        insert_run(db, "r5", "intake", issue="i1")
    assert refused.value.constraint == "uniq_active_run_per_issue"
    db.engine.dispose()


def _references_are_still_checked(url: str) -> None:
    dangling = (
        "INSERT INTO run_events (id, run_id, seq, kind, data, created_at)"
        " VALUES ('e9', 'no-such-run', 1, 'opened', '{}', '2026-01-05')"
    )
    with _engine(url) as engine, pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(dangling))


def test_the_upgrade_goes_back_while_only_linear_runs_exist(url_at_0009: str) -> None:
    before = _read(url_at_0009, _RUNS)
    migrate.upgrade(url_at_0009)
    command.downgrade(migrate.alembic_config(url_at_0009), "0009")
    assert _read(url_at_0009, _RUNS) == before
    migrate.upgrade(url_at_0009)
    github_run = (
        "INSERT INTO foundry_runs (id, tracker, issue_id, issue_key, title, status, trigger,"
        " required_roles, event_seq, created_at, updated_at) VALUES ('g1', 'github', 'I_kw1',"
        " 'acme/widgets#1', 't', 'intake', 'label', '[]', 1, '2026-01-04', '2026-01-04')"
    )
    with _engine(url_at_0009) as engine, engine.begin() as connection:
        connection.execute(sa.text(github_run))
    with pytest.raises(RuntimeError, match="other than Linear"):
        command.downgrade(migrate.alembic_config(url_at_0009), "0009")
    assert len(_read(url_at_0009, _RUNS)) == 4
