"""Per-customer limits: each SKU's limit and what each reservation counted against it
(issue 20).

Revision ID: 7c3d9e1f2a60
Revises: b4d1e7c20a15
Create Date: 2026-11-28 05:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c3d9e1f2a60"
down_revision: str | None = "b4d1e7c20a15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_limits",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("per_customer", sa.BigInteger(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_customer_limits")),
    )
    op.create_table(
        "customer_counts",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "token", "sku", name=op.f("pk_customer_counts")),
    )
    op.create_index("ix_customer_counts_sku_customer_id", "customer_counts", ["sku", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_counts_sku_customer_id", table_name="customer_counts")
    op.drop_table("customer_counts")
    op.drop_table("customer_limits")
