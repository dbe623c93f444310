"""Stock policies per (sku, location) in PostgreSQL (`/v1/policies`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inventory_cache.api.schemas.common import iso_datetime
from persistence.models import Policy


def _as_dict(p: Policy) -> dict[str, object]:
    return {
        "sku": p.sku,
        "location": p.location,
        "safety_stock": p.safety_stock,
        "reorder_point": p.reorder_point,
        "reorder_qty": p.reorder_qty,
        "lead_time_days": p.lead_time_days,
        "service_level": p.service_level,
        "order_up_to": p.order_up_to,
        "updated_at": iso_datetime(p.updated_at),
    }


def lock(db: Engine, sku: str, location: str) -> Session:
    """A transaction holding the pair's policy row locked (created if new), so that PUTs of
    one pair run one at a time across every API process, Redis write included: two at once
    on a new pair both inserted (a 500 for one), and two with different values could
    reach Redis and PostgreSQL in opposite orders (a policy that is not the safety stock)."""
    s = Session(db, expire_on_commit=False)
    try:
        insert = (sqlite if db.dialect.name == "sqlite" else postgresql).insert
        s.execute(insert(Policy).values(sku=sku, location=location).on_conflict_do_nothing())
        s.get(Policy, (sku, location), with_for_update=True, populate_existing=True)
    except BaseException:
        s.close()
        raise
    return s


def store(
    s: Session,
    sku: str,
    location: str,
    *,
    safety_stock: int,
    reorder_point: int,
    reorder_qty: int,
    lead_time_days: int,
    service_level: float,
    order_up_to: int,
) -> dict[str, object]:
    """Writes the policy in the transaction `lock` opened, commits and closes it."""
    with s:
        p = s.get(Policy, (sku, location))
        assert p is not None  # inserted or locked by `lock`
        p.safety_stock = safety_stock
        p.reorder_point = reorder_point
        p.reorder_qty = reorder_qty
        p.lead_time_days = lead_time_days
        p.service_level = service_level
        p.order_up_to = order_up_to
        p.updated_at = datetime.now(UTC)
        s.commit()
        return _as_dict(p)


def load(db: Engine, sku: str, location: str) -> dict[str, object] | None:
    with Session(db) as s:
        p = s.get(Policy, (sku, location))
        return None if p is None else _as_dict(p)
