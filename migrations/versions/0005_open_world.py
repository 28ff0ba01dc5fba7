"""Deliveries deduplicated by the digest of their signed bytes; counters shared by every
process; an agent's last sign of life and the GitHub reconciler's last read, per run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from foundry.db.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.add_column(sa.Column("body_digest", sa.String(64)))
        deliveries.create_unique_constraint("uniq_delivery_digest_per_source", ["source", "body_digest"])
    with op.batch_alter_table("foundry_runs") as runs:
        runs.add_column(sa.Column("agent_seen_at", UtcDateTime))
        runs.add_column(sa.Column("silent_flagged_at", UtcDateTime))
        runs.add_column(sa.Column("github_synced_at", UtcDateTime))
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("labels", sa.String(255), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metric_counters")
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_column("github_synced_at")
        runs.drop_column("silent_flagged_at")
        runs.drop_column("agent_seen_at")
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.drop_constraint("uniq_delivery_digest_per_source", type_="unique")
        deliveries.drop_column("body_digest")
