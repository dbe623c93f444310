"""Stock alerts as `GET /v1/alerts` lists them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inventory_cache.alerts import list_alerts
from inventory_cache.api.schemas.common import iso_datetime


def alerts(
    db: Engine,
    *,
    active_only: bool,
    sku: str | None,
    location: str | None,
    kind: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    with Session(db) as s:
        out = []
        for a in list_alerts(
            s, active_only=active_only, sku=sku, location=location, kind=kind, limit=limit
        ):
            row: dict[str, Any] = {
                "id": a.id,
                "sku": a.sku,
                "location": a.location,
                "kind": a.kind,
                "active": a.active,
                "raised_at": iso_datetime(a.raised_at),
                "details": a.details or {},
            }
            if a.cleared_at is not None:
                row["cleared_at"] = iso_datetime(a.cleared_at)
            out.append(row)
        return out
