"""Agents, their tokens (one active per agent) and the subscriptions they run on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from foundry.db.schema import ACTIVE_TOKEN, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.Text),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("current_subscription", sa.String(64)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uniq_agent_name"),
    )
    op.create_table(
        "agent_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("issued_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime),
        sa.UniqueConstraint("token_hash", name="uniq_agent_token_hash"),
    )
    op.create_index(
        "uniq_agent_active_token",
        "agent_tokens",
        ["agent_id"],
        unique=True,
        postgresql_where=ACTIVE_TOKEN,
        sqlite_where=ACTIVE_TOKEN,
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("healthy", sa.Boolean, nullable=False),
        sa.Column("failed_at", UtcDateTime),
        sa.Column("failure", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("agent_id", "name", name="uniq_subscription_per_agent"),
    )
    with op.batch_alter_table("foundry_runs") as runs:
        runs.add_column(sa.Column("agent_subscription", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_column("agent_subscription")
    op.drop_table("subscriptions")
    op.drop_index("uniq_agent_active_token", table_name="agent_tokens")
    op.drop_table("agent_tokens")
    op.drop_table("agents")
