"""The Linear user a stored provider token acts as: Foundry's own app user, whose events it ignores.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_tokens") as tokens:
        tokens.add_column(sa.Column("actor_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("provider_tokens") as tokens:
        tokens.drop_column("actor_id")
