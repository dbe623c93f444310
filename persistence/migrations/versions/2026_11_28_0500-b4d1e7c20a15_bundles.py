"""Bundles (kits): their definitions, the bundle each component movement was for, and the
bundle lines of each reservation part (issue 20).

Revision ID: b4d1e7c20a15
Revises: 5ba1edab056b
Create Date: 2026-11-28 05:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b4d1e7c20a15"
down_revision: str | None = "5ba1edab056b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bundles",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column(
            "components",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_bundles")),
    )
    op.add_column("movements", sa.Column("bundle", sa.Text(), nullable=True))
    op.add_column("reservation_lines", sa.Column("bundles", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("reservation_lines", "bundles")
    op.drop_column("movements", "bundle")
    op.drop_table("bundles")
