"""Store terminals' batches of events (`/v1/pos/events`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inventory_cache import pos
from inventory_cache.api.schemas.common import Ident


class PosEventIn(BaseModel):
    """One event: `event_id`, `type`, exactly one of `sku` and `barcode`, and `qty`.

    An unknown `type` refuses the whole batch (422): the till speaks another protocol.
    The other fields are checked by `pos.check_event`, event by event: a bad one gets an
    error result carrying `validation_error` and the others apply, so the schema
    documents them without refusing any value.
    """

    model_config = ConfigDict(extra="allow")

    type: pos.EventType
    event_id: Any = Field(default=None, description="1-64 of [A-Za-z0-9._:-]; unique per till")
    sku: Any = Field(default=None, description="1-64 of [A-Za-z0-9._:-]")
    barcode: Any = Field(default=None, description="EAN-8, UPC-A, EAN-13 or GTIN-14")
    qty: Any = Field(
        default=None,
        description="an integer; sale, return: 1 to 1,000,000; count: 0 to 1,000,000,000",
    )


class PosBatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "location": "store-1",
                    "events": [
                        {"event_id": "till3-000481", "type": "sale", "sku": "phone-a", "qty": 1},
                        {
                            "event_id": "till3-000482",
                            "type": "return",
                            "barcode": "4006381333931",
                            "qty": 1,
                        },
                        {"event_id": "rfid-0091", "type": "count", "sku": "case-b", "qty": 37},
                    ],
                }
            ]
        },
    )

    location: Ident
    events: list[PosEventIn] = Field(min_length=1, max_length=pos.MAX_EVENTS)


class PosResultOut(BaseModel):
    index: int
    event_id: str | None
    status: str = Field(description="applied, replayed (sent before) or error")
    sku: str | None = None
    location: str | None = None
    on_hand: int | None = None
    locked: int | None = None
    safety_stock: int | None = None
    available: int | None = None
    oversold: int | None = Field(
        default=None, description="units promised online that on_hand no longer covers"
    )
    code: str | None = Field(default=None, description="the error's code, e.g. validation_error")
    detail: str | None = None
    field: str | None = None


class PosBatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "location": "store-1",
                    "applied": 2,
                    "replayed": 0,
                    "failed": 0,
                    "results": [
                        {
                            "index": 0,
                            "event_id": "till1-0001",
                            "status": "applied",
                            "sku": "phone-a",
                            "location": "store-1",
                            "on_hand": 1,
                            "locked": 0,
                            "safety_stock": 0,
                            "available": 1,
                            "oversold": 0,
                        },
                        {
                            "index": 1,
                            "event_id": "till1-0002",
                            "status": "applied",
                            "sku": "phone-a",
                            "location": "store-1",
                            "on_hand": 0,
                            "locked": 0,
                            "safety_stock": 0,
                            "available": 0,
                            "oversold": 0,
                        },
                    ],
                }
            ]
        }
    )

    location: str
    applied: int
    replayed: int
    failed: int
    results: list[PosResultOut]
