"""Alembic environment: one chain for Postgres and SQLite, safe to run concurrently."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from foundry.db import database, migrate, schema

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = database.make_engine(url, pool_size=1)

with engine.connect() as connection, connection.begin():
    # On SQLite the begin above is BEGIN IMMEDIATE: a second migrator waits for the first
    # to commit, then finds the schema at head. On Postgres an advisory lock does the same.
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate.MIGRATION_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
