"""Driver exceptions turned into Foundry's typed storage errors, by constraint name.

A value the database refuses (a NUL, a lone surrogate, a number or string no column holds) is
`InvalidValue`, answered 400: validation at the edge should have caught it, and this is the last
line that keeps it from becoming a 500.
"""

from __future__ import annotations

import re

import psycopg
import psycopg_pool
from sqlalchemy import exc as sa_exc

from foundry.db import schema
from foundry.errors import DatabaseUnavailable, InvalidValue, StorageError, UniqueViolation

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


def translate(exc: BaseException) -> BaseException:
    """The typed error for a driver failure, or `exc` itself when it is not a storage error."""
    if isinstance(exc, StorageError):
        return exc
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(original, psycopg.errors.UniqueViolation):
        return UniqueViolation(original.diag.constraint_name, str(original).splitlines()[0])
    if isinstance(exc, sa_exc.IntegrityError):
        match = _SQLITE_UNIQUE.search(str(original))
        if match:
            return UniqueViolation(constraint_for_columns(match.group(1)), str(original))
    if _refused_value(exc, original):
        return InvalidValue(f"the database refused a value: {_first_line(original)}")
    if isinstance(original, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return DatabaseUnavailable(f"database unavailable: {_first_line(original)}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return DatabaseUnavailable(f"database unavailable: {_first_line(original)}")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(f"database connection lost: {_first_line(original)}")
    return exc


def _refused_value(exc: BaseException, original: BaseException | None) -> bool:
    """Postgres's data exceptions (class 22: NumericValueOutOfRange, StringDataRightTruncation,
    CharacterNotInRepertoire, UntranslatableCharacter, ...) and psycopg's own NUL check; a lone
    surrogate neither driver can encode; an int too big for SQLite to bind."""
    if isinstance(original, psycopg.DataError) or isinstance(exc, sa_exc.DataError):
        return True
    if isinstance(original, UnicodeEncodeError):
        return original.reason == "surrogates not allowed"
    return isinstance(original, OverflowError) and "SQLite INTEGER" in str(original)


def constraint_for_columns(failing: str) -> str | None:
    """SQLite names the failing columns (`t.a, t.b`), not the index: find the index by them."""
    parts = [p.strip().split(".") for p in failing.split(",")]
    table_name = parts[0][0]
    columns = [p[-1] for p in parts]
    table = schema.metadata.tables.get(table_name)
    if table is None:
        return None
    for index in table.indexes:
        if index.unique and [c.name for c in index.columns] == columns:
            return index.name
    for constraint in table.constraints:
        names = [c.name for c in getattr(constraint, "columns", [])]
        if names == columns and constraint.name:
            return str(constraint.name)
    return None


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
