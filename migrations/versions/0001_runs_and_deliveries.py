"""Runs, their timelines and inbound deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from foundry.db.schema import ACTIVE_RUN, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "foundry_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("linear_issue_id", sa.String(64), nullable=False),
        sa.Column("linear_identifier", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text),
        sa.Column("issue_url", sa.Text),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("trigger_label_id", sa.String(64)),
        sa.Column("agent_session_id", sa.String(64)),
        sa.Column("plan", sa.JSON),
        sa.Column("required_roles", sa.JSON, nullable=False),
        sa.Column("agent_name", sa.String(128)),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", UtcDateTime),
        sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pr_number", sa.Integer),
        sa.Column("pr_url", sa.Text),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index(
        "uniq_active_run_per_issue",
        "foundry_runs",
        ["linear_issue_id"],
        unique=True,
        postgresql_where=ACTIVE_RUN,
        sqlite_where=ACTIVE_RUN,
    )
    op.create_index("ix_runs_issue_created", "foundry_runs", ["linear_issue_id", "created_at"])
    op.create_index("ix_runs_status", "foundry_runs", ["status"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("delivery_key", sa.String(255), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("foundry_runs.id")),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("source", "delivery_key", name="uniq_delivery_per_source"),
    )
    op.create_index("ix_deliveries_received", "webhook_deliveries", ["received_at"])
    op.create_index("ix_deliveries_run", "webhook_deliveries", ["run_id"])

    op.create_table(
        "run_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("foundry_runs.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("delivery_id", sa.String(36)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("run_id", "seq", name="uniq_run_event_seq"),
    )


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("webhook_deliveries")
    op.drop_index("uniq_active_run_per_issue", table_name="foundry_runs")
    op.drop_table("foundry_runs")
