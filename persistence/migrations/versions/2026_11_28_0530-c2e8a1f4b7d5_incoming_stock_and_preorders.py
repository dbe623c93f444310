"""Incoming stock and pre-orders: the incoming records, each (sku, location)'s pre-order
limit, and the pre-order lines of reservations.

Revision ID: c2e8a1f4b7d5
Revises: 9f4a2b6c8d13
Create Date: 2026-11-28 05:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c2e8a1f4b7d5"
down_revision: str | None = "9f4a2b6c8d13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('awaiting', 'locked', 'uncovered')"


def upgrade() -> None:
    op.create_table(
        "incoming_stock",
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("expected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_qty", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_incoming_stock")),
    )
    op.create_index("ix_incoming_stock_sku", "incoming_stock", ["sku"])
    op.create_table(
        "preorder_policies",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("preorder_limit", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", "location", name=op.f("pk_preorder_policies")),
    )
    op.create_table(
        "preorders",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("expected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("part_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sku", "seq", name=op.f("pk_preorders")),
    )
    op.create_index("ix_preorders_order_id", "preorders", ["order_id"])
    op.create_index(
        "ix_preorders_open",
        "preorders",
        ["sku"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_preorders_open", table_name="preorders")
    op.drop_index("ix_preorders_order_id", table_name="preorders")
    op.drop_table("preorders")
    op.drop_table("preorder_policies")
    op.drop_index("ix_incoming_stock_sku", table_name="incoming_stock")
    op.drop_table("incoming_stock")
