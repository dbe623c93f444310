"""Stock alerts (`/v1/alerts`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class AlertOut(BaseModel):
    id: int
    sku: str
    location: str
    kind: Literal["low_stock", "oversold", "uncovered"]
    active: bool
    raised_at: str
    cleared_at: str | None = None  # omitted while active
    details: dict[str, Any]


class AlertsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 1,
                            "sku": "phone-a",
                            "location": "north",
                            "kind": "low_stock",
                            "active": True,
                            "raised_at": "2026-11-28T02:01:17.758Z",
                            "details": {"available": 8, "reorder_point": 8},
                        }
                    ]
                }
            ]
        }
    )

    items: list[AlertOut]
