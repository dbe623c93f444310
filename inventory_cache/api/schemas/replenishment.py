"""Suggested purchase orders (`/v1/replenishment`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from inventory_cache.replenishment import Suggestion


class ReplenishmentOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-28T02:01:30.303Z",
                    "window_days": 28,
                    "cover_days": 14,
                    "items": [
                        {
                            "sku": "phone-a",
                            "location": "store-1",
                            "sold": 2,
                            "window_days": 28,
                            "avg_daily_sales": 0.071,
                            "lead_time_days": 0,
                            "safety_stock": 0,
                            "reorder_point": 0,
                            "on_hand": 0,
                            "locked": 0,
                            "in_transit": 0,
                            "position": 0,
                            "suggested_qty": 1,
                        }
                    ],
                }
            ]
        }
    )

    as_of: str
    window_days: int
    cover_days: int
    items: list[Suggestion]
