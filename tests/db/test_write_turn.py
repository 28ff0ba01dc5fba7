"""SQLite writes take turns before they reach SQLite's lock: with SQLite's own busy wait turned
off — any writer that met another's lock would fail at once — threads and processes racing
behind a barrier still all write, every count exact."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from foundry.db import counters, database, write_turn
from foundry.db.tx import Tx
from foundry.errors import DatabaseUnavailable
from tests import databases

WRITES = 40
DEADLINE_S = 60.0


def count_writes(db: database.Database, who: str, writes: int) -> None:
    for _ in range(writes):
        db.transaction_sync(lambda tx: counters.increment(tx, "writes", {"who": who}))


def total(db: database.Database) -> int:
    async def read(tx: Tx) -> int:
        return sum(n for _, n in await counters.series(tx, "writes"))

    return db.transaction_sync(read, write=False)


@pytest.fixture
def url(tmp_path: Path, sqlite_templates: databases.SqliteTemplates) -> str:
    return sqlite_templates.clone(tmp_path)


def test_threads_of_one_process_write_in_turn_without_sqlite_waiting(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_S", 0)  # meeting SQLite's lock now fails at once
    db = database.Database(url)
    barrier, errors = threading.Barrier(6), []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=DEADLINE_S)
            count_writes(db, f"t{n}", WRITES)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert errors == []
    assert total(db) == 6 * WRITES
    db.engine.dispose()


def _process_writer(url: str, who: str, barrier: Any) -> None:
    db = database.Database(url)
    # Opened with SQLite's usual patience (opening a WAL database may wait on another process's
    # recovery), then none: from here a writer that met another's lock would fail at once.
    db.transaction_sync(lambda tx: tx.rows(sa.text("PRAGMA busy_timeout = 0")), write=False)
    barrier.wait(timeout=DEADLINE_S)
    count_writes(db, who, WRITES)
    db.engine.dispose()


def test_processes_write_in_turn_without_sqlite_waiting(url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(3)
    processes = [spawn.Process(target=_process_writer, args=(url, f"p{n}", barrier)) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(DEADLINE_S)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert total(database.Database(url)) == 3 * WRITES


def test_a_turn_held_too_long_by_another_process_is_a_database_outage(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    spawn = multiprocessing.get_context("spawn")
    holding, release = spawn.Event(), spawn.Event()
    holder = spawn.Process(target=_hold_turn, args=(path, holding, release))
    holder.start()
    try:
        assert holding.wait(DEADLINE_S)
        with pytest.raises(DatabaseUnavailable), write_turn.WriteTurn(path, wait_s=0.05).held():
            pass
    finally:
        release.set()
        holder.join(DEADLINE_S)
    with write_turn.WriteTurn(path, wait_s=DEADLINE_S).held():  # free again once the holder is done
        pass


def _hold_turn(path: str, holding: Any, release: Any) -> None:
    with write_turn.WriteTurn(path, wait_s=5).held():
        holding.set()
        release.wait(DEADLINE_S)


def test_a_nested_turn_keeps_the_file_locked_until_the_outer_one_ends(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    turn = write_turn.WriteTurn(path, wait_s=5)
    with turn.held():
        with turn.held():
            pass
        assert _file_locked_elsewhere(path)
    assert not _file_locked_elsewhere(path)


def _file_locked_elsewhere(path: str) -> bool:
    """Whether another open file description would be refused the lock (as another process is)."""
    fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
