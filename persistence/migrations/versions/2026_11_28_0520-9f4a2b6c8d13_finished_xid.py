"""The transaction that finished each order, so an API process can read the finished order
ids committed since its last read (its archive's filter, `inventory_cache/archive.py`).

Revision ID: 9f4a2b6c8d13
Revises: 7c3d9e1f2a60
Create Date: 2026-11-28 05:20:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f4a2b6c8d13"
down_revision: str | None = "7c3d9e1f2a60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reservations", sa.Column("finished_xid", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE reservations SET finished_xid = pg_current_xact_id()::text::bigint"
            " WHERE status IN ('shipped', 'cancelled', 'expired')"
        )
    op.create_index(
        "ix_reservations_finished_xid",
        "reservations",
        ["finished_xid"],
        postgresql_where=sa.text("finished_xid IS NOT NULL"),
        sqlite_where=sa.text("finished_xid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_reservations_finished_xid", table_name="reservations")
    op.drop_column("reservations", "finished_xid")
