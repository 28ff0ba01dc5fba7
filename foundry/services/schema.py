"""Bringing a database's schema to head (for the commands that own a database's lifetime)."""

from __future__ import annotations

from foundry.db import migrate


def upgrade(database_url: str) -> None:
    migrate.upgrade(database_url)
