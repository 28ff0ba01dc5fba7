"""The synchronous Postgres pool pings only a connection that sat idle, and a connection the
server dropped costs at most one failed unit of work, never a wedged pool."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from foundry.db import database
from foundry.db.tx import Tx
from foundry.errors import StorageError

BACKEND_PID = sa.text("SELECT pg_backend_pid() AS pid")


async def backend_pid(tx: Tx) -> int:
    rows = await tx.rows(BACKEND_PID)
    return int(rows[0]["pid"])


@pytest.fixture
def db(pg_url: str) -> Iterator[database.Database]:
    found = database.Database(pg_url)
    yield found
    found.engine.dispose()


def kill(pg_url: str, pid: int) -> None:
    with psycopg.connect(database.libpq_url(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_an_idle_worker_reuses_one_connection(db: database.Database) -> None:
    pids = {db.transaction_sync(backend_pid) for _ in range(5)}
    assert len(pids) == 1


def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_when_dead(
    db: database.Database, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = db.transaction_sync(backend_pid)
    kill(pg_url, first)
    monkeypatch.setattr(database, "PING_IDLE_S", 0.0)
    assert db.transaction_sync(backend_pid) != first  # the ping found it dead: a new connection


def test_a_dead_connection_used_before_the_threshold_fails_once_then_the_pool_recovers(
    db: database.Database, pg_url: str
) -> None:
    first = db.transaction_sync(backend_pid)
    kill(pg_url, first)
    with pytest.raises(StorageError):
        db.transaction_sync(backend_pid)
    assert db.transaction_sync(backend_pid) != first
