"""Sellable stock as the product page reads it (`/v1/availability`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class PromiseOut(BaseModel):
    date: str = Field(description="A UTC date, YYYY-MM-DD.")
    qty: int


class AvailabilityOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "available": 12,
                    "in_stock": True,
                    "locations": {"north": 9, "south": 3},
                }
            ]
        }
    )

    sku: str
    available: int = Field(ge=0)
    in_stock: bool
    locations: dict[str, int]
    available_to_promise: list[PromiseOut] | SkipJsonSchema[None] = Field(
        None,
        description="Only when incoming stock is open: for each date some is due, the "
        "units that can be promised for delivery by then (available now, plus incoming "
        "due by that date that no pre-order holds).",
    )


class AvailabilityBatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "sku": "phone-a",
                            "available": 12,
                            "in_stock": True,
                            "locations": {"north": 12},
                        },
                        {"sku": "earbuds-d", "available": 0, "in_stock": False, "locations": {}},
                    ]
                }
            ]
        }
    )

    items: list[AvailabilityOut]
