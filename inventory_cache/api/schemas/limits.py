"""Per-customer limits (`/v1/limits`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from inventory_cache import validation as v
from inventory_cache.api.schemas.common import Qty, StrictBody

Window = Annotated[int, Field(strict=True, ge=1, le=v.MAX_LIMIT_WINDOW_SECONDS)]


class LimitIn(StrictBody):
    """`window_seconds` left out: the limit holds over the SKU's lifetime."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"per_customer": 2, "window_seconds": 86400}]}
    )

    per_customer: Qty
    window_seconds: Window | SkipJsonSchema[None] = None


class LimitOut(BaseModel):
    """`window_seconds` is absent for a lifetime limit; with `?customer_id=`, `held` is what
    that customer holds against the limit now and `allowed` what they may still take."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"sku": "phone-a", "per_customer": 2, "window_seconds": 86400},
                {
                    "sku": "phone-a",
                    "per_customer": 2,
                    "customer_id": "c-1",
                    "held": 1,
                    "allowed": 1,
                },
            ]
        }
    )

    sku: str
    per_customer: int
    window_seconds: int | SkipJsonSchema[None] = None
    customer_id: str | SkipJsonSchema[None] = None
    held: int | SkipJsonSchema[None] = None
    allowed: int | SkipJsonSchema[None] = None
