"""Work notifications: a transaction that creates work says so; idle workers hear it at once.

Postgres: `pg_notify` inside the transaction is delivered to every `LISTEN`er at commit, and a
rolled-back transaction notifies nobody. SQLite (one machine, `foundry serve`): the helper sets
the events this process's worker loops subscribed. It does so before the commit, but the
notifying transaction holds SQLite's write lock until it commits (`BEGIN IMMEDIATE`), so the
woken worker's next claim — itself a write — waits for that commit and sees the work; a
rolled-back one costs one idle pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa

from foundry.db import database
from foundry.db.tx import Tx
from foundry.errors import DatabaseUnavailable

CHANNEL = "foundry_work"
_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', '')")

_local: set[threading.Event] = set()
_local_lock = threading.Lock()


async def work_created(tx: Tx) -> None:
    """Wake the workers once this transaction commits."""
    if tx.dialect == "postgresql":
        await tx.rows(_NOTIFY)
    else:
        signal_local()


def subscribe(event: threading.Event) -> None:
    """Have `work_created` on SQLite set `event` (this process's worker loops)."""
    with _local_lock:
        _local.add(event)


def unsubscribe(event: threading.Event) -> None:
    with _local_lock:
        _local.discard(event)


def signal_local() -> None:
    with _local_lock:
        events = list(_local)
    for event in events:
        event.set()


class Listening:
    """A dedicated autocommit connection that `LISTEN`s on the work channel."""

    def __init__(self, url: str) -> None:
        try:
            self._connection: psycopg.Connection[Any] = psycopg.connect(
                database.libpq_url(url), autocommit=True
            )
            self._connection.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot listen for work: {exc}") from exc
        self.backend_pid: int = self._connection.info.backend_pid

    def heard(self, timeout: float) -> list[str]:
        """The payloads notified within `timeout` seconds (returning at the first)."""
        try:
            return [n.payload for n in self._notifies(timeout)]
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"the work listener lost its connection: {exc}") from exc

    def _notifies(self, timeout: float) -> Iterator[psycopg.Notify]:
        return self._connection.notifies(timeout=timeout, stop_after=1)

    def close(self) -> None:
        self._connection.close()
