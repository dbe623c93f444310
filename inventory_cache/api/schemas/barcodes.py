"""Barcode mappings (`/v1/barcodes`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from inventory_cache.api.schemas.common import Ident, StrictBody


class BarcodeIn(StrictBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sku": "phone-a"}]})

    sku: Ident


class BarcodeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"barcode": "04006381333931", "sku": "phone-a"}]}
    )

    barcode: str
    sku: str
