"""Sales and stock reports (`/v1/reports`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ReportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-28T00:00:00Z",
                    "items": [
                        {"sku": "phone-a", "location": "north", "period": "2026-11-27", "units": 3}
                    ],
                }
            ]
        }
    )

    as_of: str
    items: list[dict[str, Any]]
