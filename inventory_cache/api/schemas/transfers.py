"""Transfers between locations (`/v1/transfers`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from inventory_cache.api.schemas.common import Ident, Qty, StrictBody
from inventory_cache.models import Transfer


class TransferIn(StrictBody):
    """Move stock between locations: locks at the source until shipped or cancelled."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "t-1",
                    "sku": "phone-a",
                    "from_location": "north",
                    "to_location": "south",
                    "qty": 100,
                }
            ]
        }
    )

    transfer_id: Ident
    sku: Ident
    from_location: Ident
    to_location: Ident
    qty: Qty


class TransferOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "t-1",
                    "status": "requested",
                    "sku": "phone-a",
                    "from_location": "north",
                    "to_location": "south",
                    "qty": 100,
                }
            ]
        }
    )

    transfer_id: str
    status: Literal["requested", "in_transit", "received", "cancelled"]
    sku: str
    from_location: str
    to_location: str
    qty: int

    @classmethod
    def of(cls, t: Transfer) -> dict[str, Any]:
        return {
            "transfer_id": t.transfer_id,
            "status": t.status,
            "sku": t.sku,
            "from_location": t.from_location,
            "to_location": t.to_location,
            "qty": t.qty,
        }
