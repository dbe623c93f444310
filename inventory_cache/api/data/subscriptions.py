"""Back-in-stock subscriptions as `/v1/subscriptions` makes and answers them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from inventory_cache.api.schemas.common import iso_datetime
from inventory_cache.subscriptions import create_subscription, visible_to
from persistence.models import Subscription


def _out(sub: Subscription) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.public_id,
        "sku": sub.sku,
        "status": "pending" if sub.notified_at is None else "notified",
        "created_at": iso_datetime(sub.created_at),
    }
    if sub.webhook_url is not None:
        out["webhook_url"] = sub.webhook_url
    if sub.subscriber_id is not None:
        out["subscriber_id"] = sub.subscriber_id
    if sub.notified_at is not None:
        out["notified_at"] = iso_datetime(sub.notified_at)
    return out


def create(
    db: Engine,
    *,
    sku: str,
    webhook_url: str | None,
    subscriber_id: str | None,
    allowed_hosts: list[str],
    owner: str,
) -> tuple[dict[str, Any], bool]:
    """The subscription and whether it is new (an equal pending one is answered as is)."""
    with Session(db, expire_on_commit=False) as s:
        sub, created = create_subscription(
            s,
            sku=sku,
            webhook_url=webhook_url,
            subscriber_id=subscriber_id,
            allowed_hosts=allowed_hosts,
            owner=owner,
        )
        return _out(sub), created


def find(db: Engine, public_id: str, owner: str | None) -> dict[str, Any] | None:
    """None for an unknown subscription and for one `owner` may not see."""
    with Session(db) as s:
        sub = s.scalars(select(Subscription).where(Subscription.public_id == public_id)).first()
        return None if sub is None or not visible_to(sub, owner) else _out(sub)
