"""The transaction handle every store function receives, and its two adapters.

Store functions are written once, as coroutines over `Tx`. `AsyncPgTx` runs them on psycopg's
async pool (the web hot path, one round trip per statement and nothing in between).
`SyncTx` runs the very same coroutines on a synchronous SQLAlchemy connection: its awaits never
suspend, so `drive()` finishes the coroutine with a single `send` — that is how SQLite, the CLI
and the tests share one implementation of every rule.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg.types.json import Json
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Compiled
from sqlalchemy.sql import Executable

from foundry.db import failures

T = TypeVar("T")
Row = Mapping[str, Any]
Params = Mapping[str, Any] | None


Tally = dict[tuple[str, str], int]


class Tx(Protocol):
    dialect: str
    # Counter deltas this transaction owes `metric_counters` (name, canonical labels → delta):
    # gathered as the statements run, written in one sorted upsert just before commit.
    tally: Tally

    async def rows(self, stmt: Executable, params: Params = None) -> Sequence[Row]: ...


async def first(tx: Tx, stmt: Executable, params: Params = None) -> Row | None:
    found = await tx.rows(stmt, params)
    return found[0] if found else None


async def scalar(tx: Tx, stmt: Executable, params: Params = None) -> Any:
    row = await first(tx, stmt, params)
    return None if row is None else next(iter(row.values()))


class SyncTx:
    """A synchronous SQLAlchemy connection, already inside its transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name
        self.tally: Tally = {}

    async def rows(self, stmt: Executable, params: Params = None) -> Sequence[Row]:
        try:
            result = self._connection.execute(stmt, dict(params or {}))
        except Exception as exc:
            raise failures.translate(exc) from exc
        return [dict(row._mapping) for row in result] if result.returns_rows else []


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Finish a coroutine whose awaits never suspend (every await on a `SyncTx`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous transaction awaited real I/O")


_PG_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]
_CacheKey = tuple[Executable, tuple[str, ...]]
_COMPILED: OrderedDict[_CacheKey, tuple[str, Compiled]] = OrderedDict()
_COMPILED_MAX = 512  # hot statements are module constants; the rest may come and go


def _compile(stmt: Executable, params: Params) -> tuple[str, Compiled]:
    """SQL for psycopg; an INSERT or UPDATE without `.values()` takes its columns from `params`."""
    key = (stmt, tuple(sorted(params or ())))
    hit = _COMPILED.get(key)
    if hit is not None:
        _COMPILED.move_to_end(key)
        return hit
    compiled = stmt.compile(  # type: ignore[attr-defined]
        dialect=_PG_DIALECT, column_keys=list(key[1]), compile_kwargs={"render_postcompile": True}
    )
    _COMPILED[key] = entry = (str(compiled), compiled)
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return entry


def _adapt(value: Any) -> Any:
    return Json(value) if isinstance(value, dict | list) else value


class AsyncPgTx:
    """A psycopg async connection inside its transaction; statements are compiled once."""

    dialect = "postgresql"

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection
        self.tally: Tally = {}

    async def rows(self, stmt: Executable, params: Params = None) -> Sequence[Row]:
        sql, compiled = _compile(stmt, params)
        values = {k: _adapt(v) for k, v in (compiled.construct_params(params) or {}).items()}
        try:
            cursor = await self._connection.execute(sql, values)
            return await cursor.fetchall() if cursor.description else []
        except Exception as exc:
            raise failures.translate(exc) from exc
