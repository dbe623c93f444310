"""Bundle definitions (`/v1/bundles`) and the components of a bundle line."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from inventory_cache import validation as v
from inventory_cache.api.schemas.common import Ident, Qty, StrictBody


class ComponentOut(BaseModel):
    sku: str
    qty: int


class ComponentIn(StrictBody):
    sku: Ident
    qty: Qty


class BundleIn(StrictBody):
    """PUT replaces the whole definition. Components: 1 to 20, each listed once, none a
    bundle itself nor the bundle."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "components": [
                        {"sku": "phone-a", "qty": 1},
                        {"sku": "case-b", "qty": 1},
                        {"sku": "charger-c", "qty": 1},
                    ]
                }
            ]
        }
    )

    components: list[ComponentIn] = Field(min_length=1, max_length=v.MAX_COMPONENTS)


class BundleOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-kit",
                    "components": [
                        {"sku": "case-b", "qty": 1},
                        {"sku": "charger-c", "qty": 1},
                        {"sku": "phone-a", "qty": 1},
                    ],
                    "version": 1,
                }
            ]
        }
    )

    sku: str
    components: list[ComponentOut]
    version: int = Field(description="Counts the definition's changes, deletes included.")
