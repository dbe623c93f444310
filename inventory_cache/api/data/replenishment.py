"""Suggested purchase orders as `GET /v1/replenishment` lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inventory_cache.replenishment import replenishment


def suggestions(
    db: Engine,
    *,
    now: datetime,
    window_days: int,
    cover_days: int,
    sku: str | None,
    location: str | None,
    include_all: bool,
    use_forecasts: bool,
) -> list[dict[str, Any]]:
    with Session(db) as s:
        rows = replenishment(
            s,
            now=now,
            window_days=window_days,
            cover_days=cover_days,
            sku=sku,
            location=location,
            include_all=include_all,
            use_forecasts=use_forecasts,
        )
        return [r.as_dict() for r in rows]
