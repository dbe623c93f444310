"""Stock moved between locations: requested (locked at source) → in_transit → received.

Idempotent by `transfer_id`: repeating a step answers the same transfer; a step the
state forbids (receive before ship, cancel after ship...) is 409 `invalid_state`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from inventory_cache.api.deps import ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.transfers import TransferIn, TransferOut

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])

TransferId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["t-1"])
]


@router.post(
    "",
    status_code=201,
    response_model=TransferOut,
    responses=problem_responses(
        401,
        403,
        409,
        422,
        503,
        s409="`insufficient_stock` at the source, or the transfer id used with another "
        "body (`idempotency_mismatch`).",
    ),
    summary="Request a transfer: locks qty at the source",
)
async def request_transfer(body: TransferIn, services: ServicesDep, _: WarehouseKey) -> Response:
    t = await services.metrics.timed(
        "transfer_request",
        services.engine.request_transfer(
            transfer_id=body.transfer_id,
            sku=body.sku,
            from_location=body.from_location,
            to_location=body.to_location,
            qty=body.qty,
        ),
    )
    return json_response(TransferOut.of(t), 201, replayed=t.replayed)


@router.get(
    "/{transfer_id}",
    response_model=TransferOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A transfer and its status",
)
async def get_transfer(transfer_id: TransferId, services: ServicesDep, _: WarehouseKey) -> Response:
    return json_response(TransferOut.of(await services.engine.get_transfer(transfer_id)))


_STEP_ERRORS = problem_responses(
    401,
    403,
    404,
    409,
    422,
    503,
    s409="The transfer's status forbids this step (`invalid_state`).",
)


@router.post(
    "/{transfer_id}/ship",
    response_model=TransferOut,
    responses=_STEP_ERRORS,
    summary="Ship: source on_hand and locked drop, the units are in transit",
)
async def ship_transfer(
    transfer_id: TransferId, services: ServicesDep, _: WarehouseKey
) -> Response:
    t = await services.metrics.timed("transfer_ship", services.engine.ship_transfer(transfer_id))
    return json_response(TransferOut.of(t), replayed=t.replayed)


@router.post(
    "/{transfer_id}/receive",
    response_model=TransferOut,
    responses=_STEP_ERRORS,
    summary="Receive: destination on_hand rises",
)
async def receive_transfer(
    transfer_id: TransferId, services: ServicesDep, _: WarehouseKey
) -> Response:
    t = await services.metrics.timed(
        "transfer_receive", services.engine.receive_transfer(transfer_id)
    )
    return json_response(TransferOut.of(t), replayed=t.replayed)


@router.post(
    "/{transfer_id}/cancel",
    response_model=TransferOut,
    responses=_STEP_ERRORS,
    summary="Cancel a requested transfer: unlocks at the source",
)
async def cancel_transfer(
    transfer_id: TransferId, services: ServicesDep, _: WarehouseKey
) -> Response:
    t = await services.metrics.timed(
        "transfer_cancel", services.engine.cancel_transfer(transfer_id)
    )
    return json_response(TransferOut.of(t), replayed=t.replayed)
