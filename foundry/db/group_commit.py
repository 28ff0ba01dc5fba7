"""The SQLite writer of an async app: the transactions that queue while one commits, commit together.

With `synchronous=FULL` every commit writes the pages it dirtied to the WAL and waits for the
disk; one intake dirties about twenty (the run, its first event, the delivery, the counters and
their indexes), and its commit costs more than the rest of its transaction. Under load the web's
writer thread therefore spends most of its time committing, one delivery at a time, while the
requests queue behind it. So it takes every transaction queued by the time it is free (up to
`MAX_BATCH`), runs each inside its own `SAVEPOINT` of one `BEGIN IMMEDIATE` transaction, and
commits them with one `COMMIT` — the group commit databases have always done.

Each transaction keeps its own outcome: one that raises is rolled back to its savepoint without
touching the others. Every caller hears its outcome only after the `COMMIT` has returned —
nothing is answered before it is durable, and that includes failures: a delivery found already
recorded may have been recorded by an earlier transaction of the same group, and its `duplicate`
must not be answered unless that commit succeeds. If the `COMMIT` fails, every transaction of
the group hears that error (none of them was answered).

Nothing waits for a group to fill: the first transaction after an idle moment commits alone.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from foundry.db import counters, failures
from foundry.db.tx import SyncTx, Tally, Tx, drive
from foundry.db.write_turn import WriteTurn

TxFn = Callable[[Tx], Coroutine[Any, Any, Any]]

# At most this many transactions commit together: the write turn is held for the whole group,
# so a worker loop waiting for it waits for at most this many intakes.
MAX_BATCH = 32


@dataclass
class _Job:
    fn: TxFn
    future: concurrent.futures.Future[Any]


class GroupCommitWriter:
    """One thread, one connection at a time, groups of queued write transactions per commit."""

    def __init__(self, engine: sa.Engine, turn: WriteTurn, *, run_alone: Callable[[TxFn], Any]) -> None:
        self._engine = engine
        self._turn = turn
        self._run_alone = run_alone  # a lone transaction needs no savepoint
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="foundry-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: TxFn) -> concurrent.futures.Future[Any]:
        """Queue `fn` for the next group (the writer must not be closed)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("the SQLite writer is closed")
            self._jobs.put(_Job(fn, future))
        return future

    def close(self) -> None:
        """Finish what was queued, then stop the thread."""
        with self._closing:
            self._closed = True
            self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
            self._commit([job for job in group if job.future.set_running_or_notify_cancel()])

    def _commit(self, group: list[_Job]) -> None:
        if not group:
            return
        if len(group) == 1:
            _settle(group[0].future, lambda: self._run_alone(group[0].fn))
            return
        outcomes: list[_Outcome] = []  # told only once the COMMIT has returned
        try:
            with self._turn.held(), self._engine.connect() as connection:
                connection = connection.execution_options(foundry_write=True)
                with connection.begin():
                    group_tx = SyncTx(connection)  # carries the counts of the members that kept their writes
                    outcomes = [_in_savepoint(connection, job.fn, group_tx.tally) for job in group]
                    drive(counters.flush(group_tx))
        except Exception as exc:
            error = failures.translate(exc)
            for job in group:
                job.future.set_exception(error)
            return
        for job, outcome in zip(group, outcomes, strict=True):
            if outcome.error is None:
                job.future.set_result(outcome.result)
            else:
                job.future.set_exception(outcome.error)


@dataclass(frozen=True)
class _Outcome:
    result: Any = None
    error: BaseException | None = None


def _in_savepoint(connection: sa.Connection, fn: TxFn, tally: Tally) -> _Outcome:
    """Run one transaction of the group; a failure rolls back its own writes only."""
    connection.exec_driver_sql("SAVEPOINT foundry_job")
    tx = SyncTx(connection)
    try:
        result = drive(fn(tx))
    except Exception as exc:
        # If SQLite had to roll the whole transaction back (a full disk), this raises and the
        # group fails as one; otherwise only this transaction's writes are undone.
        connection.exec_driver_sql("ROLLBACK TO foundry_job")
        connection.exec_driver_sql("RELEASE foundry_job")
        return _Outcome(error=failures.translate(exc))
    connection.exec_driver_sql("RELEASE foundry_job")
    for key, by in tx.tally.items():
        tally[key] = tally.get(key, 0) + by
    return _Outcome(result)


def _settle(future: concurrent.futures.Future[Any], run: Callable[[], Any]) -> None:
    try:
        future.set_result(run())
    except Exception as exc:
        future.set_exception(exc)
