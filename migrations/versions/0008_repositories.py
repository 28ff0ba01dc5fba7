"""A run's repository, decided once at planning, and what a run is waiting for from a person.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.add_column(sa.Column("repository", sa.String(255)))
        runs.add_column(sa.Column("awaiting", sa.String(32)))
        runs.create_index("ix_runs_repository_created", ["repository", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_index("ix_runs_repository_created")
        runs.drop_column("awaiting")
        runs.drop_column("repository")
