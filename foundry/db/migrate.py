"""Alembic, driven from code: upgrade to head, and tell whether a database is at head."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from foundry.db import failures
from foundry.db import tx as txm
from foundry.db.tx import Tx
from foundry.errors import SchemaNotAtHead

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
# The key of the Postgres advisory lock that makes concurrent `foundry migrate` runs take turns.
MIGRATION_LOCK_KEY = 0x466F756E64727931  # "Foundry1"

_VERSION = sa.table("alembic_version", sa.column("version_num"))


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS / "env.py").exists():
        raise SchemaNotAtHead(
            f"migrations not found at {MIGRATIONS}: install Foundry from its source tree (pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Upgrade to head; a database that cannot be reached or used raises a typed StorageError."""
    try:
        command.upgrade(alembic_config(url), "head")
    except Exception as exc:
        translated = failures.translate(exc)
        if translated is exc:
            raise
        raise translated from exc


@cache
def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None, "the migration chain has no head"
    return revision


async def current(tx: Tx) -> str | None:
    try:
        found: str | None = await txm.scalar(tx, sa.select(_VERSION.c.version_num))
    except Exception as exc:  # no alembic_version table yet: never migrated
        if "alembic_version" in str(exc):
            return None
        raise
    return found


async def require_head(tx: Tx) -> None:
    at = await current(tx)
    if at != head():
        raise SchemaNotAtHead(
            f"the database schema is at {at or 'nothing'}, this release needs {head()}: run `foundry migrate`"
        )
