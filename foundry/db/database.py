"""The database port: `transaction(fn)` runs a store coroutine in one transaction.

Postgres: the web hot path runs on psycopg's async pool, everything synchronous (CLI, worker,
tests) on a SQLAlchemy engine. SQLite: every transaction runs on a SQLAlchemy engine whose
write transactions begin with `BEGIN IMMEDIATE` — a deferred transaction that reads then writes
silently loses updates across processes — and, in an async app, on one writer thread, which
keeps p99 flat where forty threads would only queue on SQLite's single write lock, and commits
the transactions queued meanwhile together (`group_commit`). Every write
first takes its turn (`write_turn`): the web's writer, the worker loops of `foundry serve` and
other processes hand the lock over at once instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event

from foundry.db import counters, failures
from foundry.db.group_commit import GroupCommitWriter
from foundry.db.tx import AsyncPgTx, SyncTx, Tx, drive
from foundry.db.write_turn import WriteTurn, database_path
from foundry.errors import DatabaseUnavailable

T = TypeVar("T")
TxFn = Callable[[Tx], Coroutine[Any, Any, T]]

# How long a request may wait for a pooled connection before we answer 503: well inside
# Linear's 5 s delivery deadline, so the sender sees our Retry-After rather than a time-out.
POOL_WAIT_S = 3.0
# SQLite's busy timeout: how long a writer waits for a write lock taken outside the turns (a
# `foundry migrate`, a person's sqlite3 shell).
SQLITE_BUSY_S = 10.0
# How long a writer waits for its turn before the database counts as unavailable (503).
WRITE_TURN_WAIT_S = 10.0
# A pooled Postgres connection idle this long is pinged before it is used again.
PING_IDLE_S = 30.0


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def libpq_url(url: str) -> str:
    return "postgresql://" + sqlalchemy_url(url).removeprefix("postgresql+psycopg://")


class Database:
    """One database, reachable synchronously and from an event loop."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.dialect = self.engine.dialect.name
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Any] | None = None
        self._writer: GroupCommitWriter | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        sqlite = self.dialect == "sqlite"
        self._turn = WriteTurn(database_path(url), wait_s=WRITE_TURN_WAIT_S) if sqlite else None

    async def open(self) -> None:
        """Start the async side (call from the event loop that will use it)."""
        if self.dialect == "postgresql":
            self._pool = AsyncConnectionPool(
                libpq_url(self.url),
                min_size=min(4, self._pool_size),
                max_size=self._pool_size,
                kwargs={"row_factory": dict_row},
                timeout=POOL_WAIT_S,
                open=False,
            )
            await self._pool.open()
        else:
            assert self._turn is not None
            self._writer = GroupCommitWriter(self.engine, self._turn, run_alone=self.transaction_sync)
            self._readers = concurrent.futures.ThreadPoolExecutor(4, "foundry-sqlite-reader")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._writer is not None:
            self._writer.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        self.engine.dispose()

    async def transaction(self, fn: TxFn[T], *, write: bool = True) -> T:
        if self._pool is not None:
            return await self._pg_transaction(fn)
        if self._writer is None or self._readers is None:
            raise RuntimeError("Database.open() was not awaited")
        if write:
            return await asyncio.wrap_future(self._writer.submit(fn))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.transaction_sync, fn, write)

    def transaction_sync(self, fn: TxFn[T], write: bool = True) -> T:
        if write and self._turn is not None:
            with self._turn.held():
                return self._transaction_sync(fn, write)
        return self._transaction_sync(fn, write)

    def _transaction_sync(self, fn: TxFn[T], write: bool) -> T:
        try:
            with self.engine.connect() as connection:
                connection = connection.execution_options(foundry_write=write)
                with connection.begin():
                    tx = SyncTx(connection)
                    result = drive(fn(tx))
                    drive(counters.flush(tx))
                    return result
        except Exception as exc:
            raise failures.translate(exc) from exc

    async def _pg_transaction(self, fn: TxFn[T]) -> T:
        assert self._pool is not None
        try:
            async with self._pool.connection() as connection:
                tx = AsyncPgTx(connection)
                result = await fn(tx)
                await counters.flush(tx)
                return result
        except Exception as exc:
            translated = failures.translate(exc)
            if isinstance(translated, DatabaseUnavailable):
                # Broken connections stay in the pool until checked; drop them now so the
                # sender's retry meets a healthy one.
                asyncio.get_running_loop().create_task(self._pool.check())
            raise translated from exc


def make_engine(url: str, pool_size: int = 10) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    engine = sa.create_engine(
        sqlalchemy_url(url),
        pool_size=min(pool_size, 10),
        # The connection used last goes out first: an idle worker keeps reusing one, and the
        # rest age until `_ping_when_idle` checks them.
        pool_use_lifo=True,
        pool_timeout=POOL_WAIT_S,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection before use only when it sat idle `PING_IDLE_S` (the server may
    have restarted meanwhile). `pool_pre_ping` would ping every checkout: an extra transaction
    for every one an idle worker makes. A stale connection that slips through fails its unit of
    work, which is retried, and the disconnect invalidates the rest of the pool."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except psycopg.Error as exc:  # the pool retries the checkout on a new connection
            raise sa.exc.DisconnectionError(str(exc)) from exc


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        # Take transaction control from pysqlite so that our BEGIN is the one that runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get("foundry_write", True)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
