"""Subscriptions: a random public id, the owning API key, one pending per (owner, target).

Revision ID: 5e1c0a9b7d21
Revises: 5b1e2c7d9a40
Create Date: 2026-11-28 02:00:00+00:00

Existing rows get a random public id and no owner (only warehouse and admin keys see
them); their `dedup_key` stays empty, so duplicates made before stay as they were.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1c0a9b7d21"
down_revision: str | None = "5b1e2c7d9a40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("public_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("dedup_key", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    subs = sa.table("subscriptions", sa.column("id", sa.BigInteger), sa.column("public_id"))
    for (sub_id,) in conn.execute(sa.select(subs.c.id)).all():
        conn.execute(
            subs.update()
            .where(subs.c.id == sub_id)
            .values(public_id="sub-" + secrets.token_hex(16))
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.alter_column("public_id", existing_type=sa.String(length=40), nullable=False)
        batch.create_unique_constraint(op.f("uq_subscriptions_public_id"), ["public_id"])
    op.create_index(
        "uq_subscriptions_pending",
        "subscriptions",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("notified_at IS NULL"),
        sqlite_where=sa.text("notified_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_subscriptions_pending",
        table_name="subscriptions",
        postgresql_where=sa.text("notified_at IS NULL"),
        sqlite_where=sa.text("notified_at IS NULL"),
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint(op.f("uq_subscriptions_public_id"), type_="unique")
        batch.drop_column("dedup_key")
        batch.drop_column("owner")
        batch.drop_column("public_id")
