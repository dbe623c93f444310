"""The movements ledger as `GET /v1/movements` lists it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from persistence.models import Movement

MOVEMENT_FIELDS = (
    "id",
    "op_id",
    "sku",
    "location",
    "type",
    "reason",
    "ref",
    "delta_on_hand",
    "delta_locked",
    "on_hand_after",
    "locked_after",
    "created_at",
    "bundle",
)


def movements(
    db: Engine, *, sku: str | None, location: str | None, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """Newest first by `id`, which is the order the worker recorded them in (per SKU,
    the order they happened in Redis)."""
    t = Movement.__table__.c
    query = select(*(t[name] for name in MOVEMENT_FIELDS)).order_by(t.id.desc()).limit(limit)
    if sku is not None:
        query = query.where(t.sku == sku)
    if location is not None:
        query = query.where(t.location == location)
    if before is not None:
        query = query.where(t.id < before)
    with db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [dict(r) for r in rows]
