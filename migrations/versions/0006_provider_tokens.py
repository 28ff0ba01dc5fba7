"""Provider access tokens Foundry minted or was given, encrypted, one current per provider.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from foundry.db.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_tokens",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("ciphertext", sa.Text),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("renewed_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_tokens")
