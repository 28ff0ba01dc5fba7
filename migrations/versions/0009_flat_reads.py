"""Reads that cost the same at any history size: counters kept by the writing transactions
(sharded, so concurrent writers rarely meet on a row), and indexes that serve every listing in
its keyset order `(created_at, id)`.

The counters start from what the tables hold now, so `/metrics` shows the same figures before
and after the upgrade.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The aggregates the counters replace, as they stood in 0008 (name, labels SQL, FROM … GROUP BY).
_BACKFILL = {
    "deliveries_recorded": (
        "'source=' || source || ',verdict=' || verdict",
        "webhook_deliveries GROUP BY source, verdict",
    ),
    "runs": ("'status=' || status", "foundry_runs GROUP BY status"),
    "outbound_failures": ("'kind=' || kind", "outbox WHERE state = 'failed' GROUP BY kind"),
}
_TO = {"postgresql": "data->>'to'", "sqlite": "json_extract(data, '$.to')"}


def upgrade() -> None:
    op.rename_table("metric_counters", "metric_counters_0008")
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("labels", sa.String(255), primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True, server_default="0"),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO metric_counters (name, labels, shard, value) "
        "SELECT name, labels, 0, value FROM metric_counters_0008"
    )
    op.drop_table("metric_counters_0008")
    _backfill(op.get_bind().dialect.name)
    _keyset_indexes()


def _backfill(dialect: str) -> None:
    for name, (labels, source) in _BACKFILL.items():
        op.execute(
            "INSERT INTO metric_counters (name, labels, shard, value) "
            f"SELECT '{name}', {labels}, 0, count(*) FROM {source}"
        )
    to = _TO[dialect]
    op.execute(
        "INSERT INTO metric_counters (name, labels, shard, value) "
        f"SELECT 'run_transitions', 'to=' || moved_to, 0, count(*) "
        f"FROM (SELECT {to} AS moved_to FROM run_events) AS moves "
        "WHERE moved_to IS NOT NULL GROUP BY moved_to"
    )


def _keyset_indexes() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_index("ix_runs_status")
        runs.drop_index("ix_runs_repository_created")
        runs.create_index("ix_runs_created", ["created_at", "id"])
        runs.create_index("ix_runs_status_created", ["status", "created_at", "id"])
        runs.create_index("ix_runs_repository_created", ["repository", "created_at", "id"])
        runs.create_index("ix_runs_identifier_created", ["linear_identifier", "created_at", "id"])
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.drop_index("ix_deliveries_received")
        deliveries.create_index("ix_deliveries_received", ["received_at", "id"])
        deliveries.create_index("ix_deliveries_source_received", ["source", "received_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.drop_index("ix_deliveries_source_received")
        deliveries.drop_index("ix_deliveries_received")
        deliveries.create_index("ix_deliveries_received", ["received_at"])
    with op.batch_alter_table("foundry_runs") as runs:
        runs.drop_index("ix_runs_identifier_created")
        runs.drop_index("ix_runs_repository_created")
        runs.drop_index("ix_runs_status_created")
        runs.drop_index("ix_runs_created")
        runs.create_index("ix_runs_repository_created", ["repository", "created_at"])
        runs.create_index("ix_runs_status", ["status"])
    op.execute("DELETE FROM metric_counters WHERE name <> 'foundry_deliveries_refused'")
    op.rename_table("metric_counters", "metric_counters_0009")
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("labels", sa.String(255), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO metric_counters (name, labels, value) "
        "SELECT name, labels, sum(value) FROM metric_counters_0009 GROUP BY name, labels"
    )
    op.drop_table("metric_counters_0009")
