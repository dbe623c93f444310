"""Stock policies per (sku, location) (`/v1/policies`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from inventory_cache.api.schemas.common import Count, StrictBody
from inventory_cache.api.schemas.stock import LevelOut

Days = Annotated[int, Field(strict=True, ge=0, le=365)]


class PolicyIn(StrictBody):
    """A field left out is 0 (PUT replaces the whole policy)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "safety_stock": 2,
                    "reorder_point": 10,
                    "reorder_qty": 40,
                    "lead_time_days": 7,
                    "preorder_limit": 20,
                }
            ]
        }
    )

    safety_stock: Count = 0
    reorder_point: Count = 0
    reorder_qty: Count = 0
    lead_time_days: Days = 0
    # Forecast-driven replenishment: the chance of not running out during a lead time,
    # and the level an order brings the position up to (0: the reorder point plus the
    # forecast over the cover days).
    service_level: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95
    order_up_to: Count = 0
    # Units reservations may take from the location's incoming stock (pre-orders).
    preorder_limit: Count = 0


class PolicyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "location": "north",
                    "safety_stock": 2,
                    "reorder_point": 8,
                    "reorder_qty": 20,
                    "lead_time_days": 5,
                    "preorder_limit": 20,
                    "updated_at": "2026-11-28T02:01:17.747Z",
                    "levels": {
                        "sku": "phone-a",
                        "location": "north",
                        "on_hand": 10,
                        "locked": 0,
                        "safety_stock": 2,
                        "available": 8,
                    },
                }
            ]
        }
    )

    sku: str
    location: str
    safety_stock: int
    reorder_point: int
    reorder_qty: int
    lead_time_days: int
    service_level: float
    order_up_to: int
    preorder_limit: int
    updated_at: str
    levels: LevelOut | None = None
