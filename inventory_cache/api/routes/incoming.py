"""Incoming stock: units expected at a location on a date (purchase orders, production).

`POST /v1/incoming` creates a record or, with the ref of an open one, changes its
quantity or date (201 when created, 200 otherwise; the same body again changes nothing).
Receiving books the units on hand and turns the awaiting pre-orders of that location into
locks, in the order they were taken; a cancel, a short receipt or a lowered quantity
takes the cover from the latest pre-orders first. Every answer lists the pre-order lines
it converted or uncovered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from inventory_cache.api.deps import ReadKey, ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.incoming import IncomingIn, IncomingOut, ReceiveIn, parse_moment

router = APIRouter(prefix="/v1/incoming", tags=["incoming"])

Ref = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["po-1"])]


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
