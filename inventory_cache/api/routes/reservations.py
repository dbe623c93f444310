"""Checkout: lock stock for an order, then cancel it or ship it.

Every answer is read from the live state in Lua, never from the near-cache. Creating,
cancelling and shipping are idempotent by `order_id`: a retry answers the first result
(`Idempotent-Replayed: true`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from inventory_cache.api.deps import (
    CheckoutKey,
    Services,
    ServicesDep,
    WarehouseKey,
    owner_filter,
    parse_body,
    require_scope,
)
from inventory_cache.api.openapi import json_body
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.reservations import ReservationIn, ReservationOut
from inventory_cache.errors import InsufficientStock, InventoryError, LimitExceeded
from inventory_cache.models import LineRequest

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])
_checkout_key = require_scope("checkout")

OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["o-1"])]


@router.post(
    "",
    status_code=201,
    response_model=ReservationOut,
    responses=problem_responses(
        401,
        403,
        409,
        422,
        429,
        503,
        s409="`insufficient_stock` (with `lines`: sku, requested, available), "
        "`limit_exceeded` (a per-customer limit; `lines`: sku, requested, allowed), the "
        "order id used with other lines or by another API key (`idempotency_mismatch`), or "
        "an attempt for "
        "this order still running (`invalid_state`).",
        s429="`rate_limited`: this API key's request rate, or its reservation lines in "
        "flight (`INVENTORY_MAX_LINES_IN_FLIGHT_PER_KEY`); retry after `Retry-After`.",
    ),
    summary="Reserve stock for an order: every line or none",
    openapi_extra=json_body(ReservationIn),
)
async def reserve(request: Request) -> Response:
    """A line without `location` is served by one location when one can cover it, in
    `INVENTORY_LOCATION_PRIORITY` order, else split. Default TTL 900 s. `customer_id` is
    required when a line's SKU has a per-customer limit (422 without it)."""
    # The checkout's hot route takes no FastAPI dependency or declared body: solving them
    # cost about a sixth of a flash-sale request (py-spy). It checks the key, then reads
    # its body, itself; the body is declared for the OpenAPI document by `json_body`.
    services: Services = request.app.state.services
    principal = await _checkout_key(request)
    body = parse_body(ReservationIn, await request.body())
    lines = [LineRequest(ln.sku, ln.qty, ln.location) for ln in body.lines]
    limit = services.settings.max_lines_in_flight_per_key
    try:
        with services.lines_in_flight.hold(principal.key_id, len(lines), limit):
            async with services.line_queue.turn(len(lines)):
                res = await services.metrics.timed(
                    "reserve",
                    services.engine.reserve(
                        order_id=body.order_id,
                        lines=lines,
                        ttl_seconds=body.ttl_seconds,
                        owner=principal.key_id,
                        customer_id=body.customer_id,
                    ),
                )
    except InsufficientStock:
        services.metrics.reservations.labels("insufficient_stock").inc()
        raise
    except LimitExceeded:
        services.metrics.reservations.labels("limit_exceeded").inc()
        raise
    except InventoryError:
        services.metrics.reservations.labels("error").inc()
        raise
    services.metrics.reservations.labels("ok").inc()
    return json_response(ReservationOut.of(res), 201, replayed=res.replayed)


@router.get(
    "/{order_id}",
    response_model=ReservationOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A reservation and its status",
)
async def get_reservation(
    order_id: OrderId, services: ServicesDep, principal: CheckoutKey
) -> Response:
    """`status` is `active`, `cancelled`, `expired` (TTL passed) or `shipped`. Another
    `checkout` key's order is 404, as an unknown one."""
    res = await services.engine.get_reservation(order_id, owner=owner_filter(principal))
    return json_response(ReservationOut.of(res))


_SETTLE_ERRORS = problem_responses(
    401,
    403,
    404,
    409,
    422,
    503,
    s409="The reservation is already in a state that forbids this (`invalid_state`, "
    "with `reservation_status`: cancelled, expired or shipped), or its reservation attempt "
    "is still placing its lines (`invalid_state` with `reservation_status: pending`: retry "
    "shortly).",
)


@router.post(
    "/{order_id}/cancel",
    response_model=ReservationOut,
    responses=_SETTLE_ERRORS,
    summary="Release the reservation's locks",
)
async def cancel(order_id: OrderId, services: ServicesDep, principal: CheckoutKey) -> Response:
    """→ `cancelled`; again → the same answer; after ship or expiry → 409 `invalid_state`;
    another `checkout` key's order → 404."""
    res = await services.metrics.timed(
        "cancel", services.engine.cancel(order_id, owner=owner_filter(principal))
    )
    return json_response(ReservationOut.of(res), replayed=res.replayed)


@router.post(
    "/{order_id}/ship",
    response_model=ReservationOut,
    responses=_SETTLE_ERRORS,
    summary="Ship the reserved units: on_hand and locked drop",
)
async def ship(order_id: OrderId, services: ServicesDep, _: WarehouseKey) -> Response:
    """→ `shipped`; again → the same answer; after cancel or expiry → 409 `invalid_state`."""
    res = await services.metrics.timed("ship", services.engine.ship(order_id))
    return json_response(ReservationOut.of(res), replayed=res.replayed)
