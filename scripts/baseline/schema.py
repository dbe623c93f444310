"""The baseline's own tables, prefixed `baseline_` so they never meet the service's tables.

Created by a function rather than an Alembic migration: the baseline is a benchmark
fixture that a run creates in a scratch database and throws away.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

TABLES = ("baseline_movements", "baseline_reservations", "baseline_stock")

_DDL = (
    """
    CREATE TABLE IF NOT EXISTS baseline_stock (
        sku text NOT NULL,
        location text NOT NULL,
        on_hand bigint NOT NULL DEFAULT 0,
        locked bigint NOT NULL DEFAULT 0,
        safety_stock bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (sku, location)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS baseline_reservations (
        order_id text PRIMARY KEY,
        status text NOT NULL,
        fingerprint text NOT NULL,
        expires_at bigint NOT NULL,
        lines jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS baseline_movements (
        id bigserial PRIMARY KEY,
        op_id text NOT NULL,
        sku text NOT NULL,
        location text NOT NULL,
        type text NOT NULL,
        reason text NOT NULL,
        ref text NOT NULL,
        delta_on_hand bigint NOT NULL,
        delta_locked bigint NOT NULL,
        on_hand_after bigint NOT NULL,
        locked_after bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (op_id, sku, location)
    )
    """,
)


# Serialises concurrent creators (every uvicorn worker runs this at start-up): two
# concurrent CREATE TABLE IF NOT EXISTS of one table can both miss it and one then fails.
_LOCK_ID = 0x1B5E_7AB1E


async def create_schema(conn: AsyncConnection[Any]) -> None:
    """Create the baseline's tables if absent; safe to call from several processes at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for stmt in _DDL:
            await conn.execute(stmt)


async def drop_schema(conn: AsyncConnection[Any]) -> None:
    """Drop the baseline's tables, so a benchmark starts from an empty stock."""
    await conn.execute("DROP TABLE IF EXISTS " + ", ".join(TABLES))
