"""A run's pull request: repository and head, and the head the policy last checked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.add_column(sa.Column("pr_repository", sa.String(255)))
        runs.add_column(sa.Column("pr_head_sha", sa.String(64)))
        runs.add_column(sa.Column("pr_checked_sha", sa.String(64)))
    op.create_index("ix_runs_pr", "foundry_runs", ["pr_repository", "pr_number"])


def downgrade() -> None:
    op.drop_index("ix_runs_pr", table_name="foundry_runs")
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_column("pr_checked_sha")
        runs.drop_column("pr_head_sha")
        runs.drop_column("pr_repository")
