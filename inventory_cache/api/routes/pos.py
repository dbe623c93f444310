"""Store terminals: a batch of sales, returns and counts (`warehouse`).

The answer is 200 with one result per event, in the order sent, even when some events
failed: each event stands alone (see `pos.py`). Only a malformed batch (bad location,
not 1 to 1,000 events, an event that is not an object or has no known `type`) is
refused whole with 422, and a Redis that is not loaded with 503
(send the batch again after warmup: what was applied replays).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from inventory_cache import pos
from inventory_cache.api.deps import BarcodesDep, ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas import Ident

router = APIRouter(prefix="/v1/pos", tags=["pos"])


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


@router.post(
    "/events",
    response_model=PosBatchOut,
    responses=problem_responses(401, 403, 413, 415, 422, 503),
    summary="Sales, returns and counts from a store's tills and scanners",
)
async def pos_events(
    body: PosBatchIn, services: ServicesDep, barcodes: BarcodesDep, _: WarehouseKey
) -> Response:
    results = await services.metrics.timed(
        "pos_events",
        pos.apply_batch(
            services.engine,
            barcodes,
            location=body.location,
            events=[e.model_dump(exclude_unset=True) for e in body.events],
        ),
    )
    counts = {"applied": 0, "replayed": 0, "error": 0}
    for r in results:
        counts[r.status] += 1
    return json_response(
        {
            "location": body.location,
            "applied": counts["applied"],
            "replayed": counts["replayed"],
            "failed": counts["error"],
            "results": [r.as_dict() for r in results],
        },
        replayed=counts["replayed"] == len(results),
    )
