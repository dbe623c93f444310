"""Goods in, corrections, returns (`/v1/inbound`, `/v1/adjustments`, `/v1/returns`) and
the movements ledger (`/v1/movements`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from inventory_cache import validation as v
from inventory_cache.api.schemas.common import Count, Ident, Qty, StrictBody


class InboundIn(StrictBody):
    """Goods received at a location (a purchase order, a delivery note)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ref": "po-1", "sku": "phone-a", "location": "north", "qty": 10}]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty


class AdjustmentIn(StrictBody):
    """A correction of on_hand: `delta`, or a count `set_on_hand`; exactly one of them.

    `expected_on_hand` turns it into a compare-and-set: refused with 409 `invalid_state`
    when on_hand is not what the counter saw.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["delta"]}, {"required": ["set_on_hand"]}],
            "examples": [
                {
                    "ref": "ADJ-7",
                    "sku": "phone-a",
                    "location": "north",
                    "delta": -2,
                    "reason": "damage",
                },
                {
                    "ref": "CNT-3",
                    "sku": "phone-a",
                    "location": "north",
                    "set_on_hand": 42,
                    "expected_on_hand": 40,
                    "reason": "count",
                },
            ],
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    reason: Literal["damage", "loss", "found", "count", "correction", "reconcile"]
    delta: (
        Annotated[
            int,
            Field(
                strict=True,
                ge=-v.MAX_QTY,
                le=v.MAX_QTY,
                json_schema_extra={"not": {"const": 0}},
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    set_on_hand: Count | SkipJsonSchema[None] = None
    expected_on_hand: Count | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _one_change(self) -> AdjustmentIn:
        if (self.delta is None) == (self.set_on_hand is None):
            raise ValueError("give exactly one of delta and set_on_hand")
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        return self


class ReturnIn(StrictBody):
    """A customer return; `restock: false` records it without adding to on_hand."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ref": "RMA-9", "sku": "phone-a", "location": "north", "qty": 1, "restock": True}
            ]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty
    restock: bool


class MovementOut(BaseModel):
    """One ledger row: the change of one (sku, location) by one operation."""

    id: int = Field(description="Recording order; pass as `before` to page back.")
    op_id: str = Field(examples=["reserve:o-1:3f2a9c0d1b2e"])
    sku: str
    location: str
    type: str = Field(examples=["reserve"])
    reason: str
    ref: str
    delta_on_hand: int
    delta_locked: int
    on_hand_after: int
    locked_after: int
    created_at: datetime
    bundle: str | SkipJsonSchema[None] = Field(
        None,
        description="Only on component rows of bundle lines: the bundles, comma-separated.",
    )


class MovementsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 1042,
                            "op_id": "reserve:o-1:3f2a9c0d1b2e",
                            "sku": "phone-a",
                            "location": "north",
                            "type": "reserve",
                            "reason": "reserve",
                            "ref": "o-1",
                            "delta_on_hand": 0,
                            "delta_locked": 2,
                            "on_hand_after": 10,
                            "locked_after": 2,
                            "created_at": "2026-11-22T10:15:00.000Z",
                        }
                    ]
                }
            ]
        }
    )

    items: list[MovementOut]
