"""Ledger marks (Redis behind the ledger) and one ledger row per (sku, location, version).

Revision ID: 5b1e2c7d9a40
Revises: cdb7f3b4e367
Create Date: 2026-11-28 02:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e2c7d9a40"
down_revision: str | None = "cdb7f3b4e367"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_marks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("marks", sa.Text(), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_marks")),
    )
    op.create_index(
        "uq_movements_sku_location_version",
        "movements",
        ["sku", "location", "version"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_movements_sku_location_version", table_name="movements")
    op.drop_table("ledger_marks")
