"""Incoming stock: units expected at a location on a date (purchase orders, production).

`POST /v1/incoming` creates a record or, with the ref of an open one, changes its
quantity or date (201 when created, 200 otherwise; the same body again changes nothing).
Receiving books the units on hand and turns the awaiting pre-orders of that location into
locks, in the order they were taken; a cancel, a short receipt or a lowered quantity
takes the cover from the latest pre-orders first. Every answer lists the pre-order lines
it converted or uncovered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.responses import Response

from inventory_cache.api.deps import ReadKey, ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas import IDENT_PATTERN, Count, Ident, Qty, StrictBody, iso_utc
from inventory_cache.models import Incoming

router = APIRouter(prefix="/v1/incoming", tags=["incoming"])

Ref = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["po-1"])]


def parse_moment(value: str) -> int:
    """An ISO 8601 date or date-time as ms since the epoch; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected_at must be an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class IncomingIn(StrictBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ref": "po-1",
                    "sku": "phone-a",
                    "location": "north",
                    "qty": 40,
                    "expected_at": "2026-12-05",
                }
            ]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty
    expected_at: str = Field(
        max_length=40, description="ISO 8601 date or date-time (UTC when it names no zone)."
    )

    @field_validator("expected_at")
    @classmethod
    def _moment(cls, value: str) -> str:
        parse_moment(value)
        return value


class ReceiveIn(StrictBody):
    qty: Count | SkipJsonSchema[None] = Field(
        None, description="Units that came (default: the units expected)."
    )


class PreorderChangeOut(BaseModel):
    order_id: str
    sku: str
    location: str
    qty: int
    expected_at: str
    state: str = Field(description="`locked` (converted) or `uncovered`.")


class IncomingOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ref": "po-1",
                    "sku": "phone-a",
                    "location": "north",
                    "qty": 40,
                    "expected_at": "2026-12-05T00:00:00.000Z",
                    "status": "open",
                    "received_qty": 0,
                    "preorders": [],
                }
            ]
        }
    )

    ref: str
    sku: str
    location: str
    qty: int
    expected_at: str
    status: str = Field(description="`open`, `received` or `cancelled`.")
    received_qty: int
    preorders: list[PreorderChangeOut]

    @classmethod
    def of(cls, i: Incoming) -> dict[str, Any]:
        return {
            "ref": i.ref,
            "sku": i.sku,
            "location": i.location,
            "qty": i.qty,
            "expected_at": iso_utc(i.expected_at),
            "status": i.status,
            "received_qty": i.received_qty,
            "preorders": [
                {
                    "order_id": c.order_id,
                    "sku": c.sku,
                    "location": c.location,
                    "qty": c.qty,
                    "expected_at": iso_utc(c.expected_at),
                    "state": c.state,
                }
                for c in i.preorders
            ],
        }


_CLOSE_ERRORS = problem_responses(
    401,
    403,
    404,
    409,
    422,
    503,
    s409="`invalid_state`: the record was closed the other way (or received with another "
    "quantity).",
)


@router.post(
    "",
    status_code=201,
    response_model=IncomingOut,
    responses={
        200: {"model": IncomingOut, "description": "An open record changed (or unchanged)."},
        **problem_responses(
            401,
            403,
            409,
            422,
            503,
            s409="`invalid_state`: the ref is received or cancelled, or names another SKU or "
            "location.",
        ),
    },
    summary="Record (or change) stock expected at a location",
)
async def put_incoming(body: IncomingIn, services: ServicesDep, _: WarehouseKey) -> Response:
    i = await services.metrics.timed(
        "incoming_put",
        services.engine.incoming.put(
            ref=body.ref,
            sku=body.sku,
            location=body.location,
            qty=body.qty,
            expected_at=parse_moment(body.expected_at),
        ),
    )
    return json_response(IncomingOut.of(i), 201 if i.created else 200, replayed=i.replayed)


@router.get(
    "/{ref}",
    response_model=IncomingOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="An incoming record and its status",
)
async def get_incoming(ref: Ref, services: ServicesDep, _: ReadKey) -> Response:
    return json_response(IncomingOut.of(await services.engine.incoming.get(ref)))


@router.post(
    "/{ref}/receive",
    response_model=IncomingOut,
    responses=_CLOSE_ERRORS,
    summary="Receive: book the units on hand and convert the awaiting pre-orders",
)
async def receive_incoming(
    ref: Ref, services: ServicesDep, _: WarehouseKey, body: ReceiveIn | None = None
) -> Response:
    qty = body.qty if body is not None else None
    i = await services.metrics.timed("incoming_receive", services.engine.incoming.receive(ref, qty))
    return json_response(IncomingOut.of(i), replayed=i.replayed)


@router.post(
    "/{ref}/cancel",
    response_model=IncomingOut,
    responses=_CLOSE_ERRORS,
    summary="Cancel: the units will not come; pre-orders on them lose their cover",
)
async def cancel_incoming(ref: Ref, services: ServicesDep, _: WarehouseKey) -> Response:
    i = await services.metrics.timed("incoming_cancel", services.engine.incoming.cancel(ref))
    return json_response(IncomingOut.of(i), replayed=i.replayed)
