"""A run names its issue by tracker: (tracker, issue_id, issue_key) on every run.

Linear's runs keep `linear_issue_id`, `linear_identifier` and `uniq_active_run_per_issue` as
they were; the same two values are copied into `issue_id` and `issue_key`. Runs of any other
tracker leave the Linear columns empty and are held to one active run per issue by
`uniq_active_run_per_tracker_issue`. A CHECK keeps each run to exactly one of the two shapes.

On SQLite, relaxing `linear_issue_id`'s NOT NULL rebuilds the table (copy, drop, rename); the
environment turns foreign keys off for the migration and checks them all before it commits.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from foundry.db import schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("foundry_runs") as runs:
        runs.add_column(sa.Column("tracker", sa.String(16), nullable=False, server_default=schema.LINEAR))
        runs.add_column(sa.Column("issue_id", sa.String(64)))
        runs.add_column(sa.Column("issue_key", sa.String(255)))
    op.execute("UPDATE foundry_runs SET issue_id = linear_issue_id, issue_key = linear_identifier")
    with op.batch_alter_table("foundry_runs", recreate="always" if _sqlite() else "auto") as runs:
        # Dropped here and made again below: a rebuilt SQLite table gets back only the indexes
        # Alembic can reflect, and a partial index's predicate is not among them.
        runs.drop_index("uniq_active_run_per_issue")
        runs.drop_index("ix_runs_issue_created")
        runs.drop_index("ix_runs_identifier_created")
        runs.alter_column("issue_id", existing_type=sa.String(64), nullable=False)
        runs.alter_column("issue_key", existing_type=sa.String(255), nullable=False)
        runs.alter_column("linear_issue_id", existing_type=sa.String(64), nullable=True)
        runs.alter_column("linear_identifier", existing_type=sa.String(32), nullable=True)
        runs.create_check_constraint("ck_runs_tracker_identity", schema.TRACKER_IDENTITY)
    _partial_unique("uniq_active_run_per_issue", ["linear_issue_id"], schema.ACTIVE_RUN)
    _partial_unique(
        "uniq_active_run_per_tracker_issue", ["tracker", "issue_id"], schema.OTHER_TRACKER_ACTIVE_RUN
    )
    op.create_index("ix_runs_issue_created", "foundry_runs", ["issue_id", "created_at"])
    op.create_index("ix_runs_issue_key_created", "foundry_runs", ["issue_key", "created_at", "id"])


def downgrade() -> None:
    others = op.get_bind().execute(
        sa.text(f"SELECT count(*) FROM foundry_runs WHERE tracker <> '{schema.LINEAR}'")
    )
    if others.scalar_one():
        raise RuntimeError("runs of trackers other than Linear exist: 0009 cannot hold them")
    op.drop_index("ix_runs_issue_key_created", "foundry_runs")
    op.drop_index("ix_runs_issue_created", "foundry_runs")
    op.drop_index("uniq_active_run_per_tracker_issue", "foundry_runs")
    op.drop_index("uniq_active_run_per_issue", "foundry_runs")
    with op.batch_alter_table("foundry_runs", recreate="always" if _sqlite() else "auto") as runs:
        runs.drop_constraint("ck_runs_tracker_identity", type_="check")
        runs.alter_column("linear_issue_id", existing_type=sa.String(64), nullable=False)
        runs.alter_column("linear_identifier", existing_type=sa.String(32), nullable=False)
        runs.drop_column("issue_key")
        runs.drop_column("issue_id")
        runs.drop_column("tracker")
    _partial_unique("uniq_active_run_per_issue", ["linear_issue_id"], schema.ACTIVE_RUN)
    op.create_index("ix_runs_issue_created", "foundry_runs", ["linear_issue_id", "created_at"])
    op.create_index("ix_runs_identifier_created", "foundry_runs", ["linear_identifier", "created_at", "id"])


def _partial_unique(name: str, columns: list[str], where: sa.TextClause) -> None:
    op.create_index(name, "foundry_runs", columns, unique=True, postgresql_where=where, sqlite_where=where)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"
