"""Levels of one (sku, location) and of a SKU everywhere (`/v1/stock`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inventory_cache.models import Level


class LevelOut(BaseModel):
    """The levels of one (sku, location) after a change."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "location": "north",
                    "on_hand": 10,
                    "locked": 1,
                    "safety_stock": 0,
                    "available": 9,
                }
            ]
        }
    )

    sku: str
    location: str
    on_hand: int
    locked: int
    safety_stock: int
    available: int = Field(ge=0)

    @classmethod
    def of(cls, lv: Level) -> dict[str, Any]:
        return {
            "sku": lv.sku,
            "location": lv.location,
            "on_hand": lv.on_hand,
            "locked": lv.locked,
            "safety_stock": lv.safety_stock,
            "available": lv.available,
        }


class Levels(BaseModel):
    on_hand: int
    locked: int
    safety_stock: int
    available: int = Field(ge=0)


class StockOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "locations": {
                        "north": {"on_hand": 10, "locked": 1, "safety_stock": 0, "available": 9}
                    },
                }
            ]
        }
    )

    sku: str
    locations: dict[str, Levels]
