"""Alembic environment: one chain for Postgres and SQLite, safe to run concurrently."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from foundry.db import database, migrate, schema


def _migrate(connection: sa.Connection, sqlite: bool) -> None:
    if not sqlite:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate.MIGRATION_LOCK_KEY})
    context.configure(connection=connection, target_metadata=schema.metadata, render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left {len(broken)} rows referring to rows that are gone")


url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = database.make_engine(url, pool_size=1)
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A migration that rebuilds a parent table (copy, drop, rename) must not have the drop
        # cascade into its children, and SQLite takes this pragma only outside a transaction.
        # Every reference is checked before the migration commits.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    with connection.begin():
        # On SQLite this begin is BEGIN IMMEDIATE: a second migrator waits for the first to
        # commit, then finds the schema at head. On Postgres an advisory lock does the same.
        _migrate(connection, sqlite)
engine.dispose()
