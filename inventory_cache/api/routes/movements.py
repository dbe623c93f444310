"""Goods in, corrections and customer returns (scope `warehouse`), and the ledger (`read`).

Each write is idempotent by its `ref`: a retry with the same body answers the first
result (with `Idempotent-Replayed: true`) and changes nothing; the same ref with another
body is 409 `idempotency_mismatch`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from inventory_cache.api.data import movements as data
from inventory_cache.api.deps import ReadKey, ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import Ident, iso_datetime
from inventory_cache.api.schemas.movements import AdjustmentIn, InboundIn, MovementsOut, ReturnIn
from inventory_cache.api.schemas.stock import LevelOut

router = APIRouter(prefix="/v1", tags=["movements"])

_WRITE_ERRORS = problem_responses(
    401,
    403,
    409,
    422,
    503,
    s409="The ref was used with another body (`idempotency_mismatch`), or "
    "`expected_on_hand` did not match (`invalid_state`).",
)


@router.post(
    "/inbound",
    response_model=LevelOut,
    responses=_WRITE_ERRORS,
    summary="Receive goods at a location",
)
async def inbound(body: InboundIn, services: ServicesDep, _: WarehouseKey) -> Response:
    """on_hand rises by `qty`; answers the new levels of that (sku, location)."""
    level = await services.metrics.timed(
        "inbound",
        services.engine.inbound(ref=body.ref, sku=body.sku, location=body.location, qty=body.qty),
    )
    return json_response(LevelOut.of(level), replayed=level.replayed)


@router.post(
    "/adjustments",
    response_model=LevelOut,
    responses=_WRITE_ERRORS,
    summary="Correct on_hand: a delta or a counted value",
)
async def adjust(body: AdjustmentIn, services: ServicesDep, _: WarehouseKey) -> Response:
    """Physical truth wins: on_hand may fall below locked, which shows as an oversell alert."""
    level = await services.metrics.timed(
        "adjust",
        services.engine.adjust(
            ref=body.ref,
            sku=body.sku,
            location=body.location,
            reason=body.reason,
            delta=body.delta,
            set_on_hand=body.set_on_hand,
            expected_on_hand=body.expected_on_hand,
        ),
    )
    return json_response(LevelOut.of(level), replayed=level.replayed)


@router.post(
    "/returns",
    response_model=LevelOut,
    responses=_WRITE_ERRORS,
    summary="Record a customer return",
)
async def record_return(body: ReturnIn, services: ServicesDep, _: WarehouseKey) -> Response:
    """`restock: true` adds `qty` to on_hand; otherwise the return is only recorded."""
    level = await services.metrics.timed(
        "return",
        services.engine.record_return(
            ref=body.ref,
            sku=body.sku,
            location=body.location,
            qty=body.qty,
            restock=body.restock,
        ),
    )
    return json_response(LevelOut.of(level), replayed=level.replayed)


@router.get(
    "/movements",
    response_model=MovementsOut,
    responses=problem_responses(401, 403, 422, 503, s503="PostgreSQL unreachable (`not_ready`)."),
    summary="The ledger, newest first",
)
async def movements(
    services: ServicesDep,
    _: ReadKey,
    sku: Annotated[Ident | None, Query()] = None,
    location: Annotated[Ident | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only rows with a smaller `id`.")
    ] = None,
) -> Response:
    """Read from PostgreSQL: it shows what the write-behind worker has recorded so far.
    A component row of bundle lines names the bundles (`bundle`, comma-separated)."""
    rows = await services.postgres.run(
        data.movements, sku=sku, location=location, limit=limit, before=before
    )
    for row in rows:
        row["created_at"] = iso_datetime(row["created_at"])
        if row["bundle"] is None:
            del row["bundle"]
    return json_response({"items": rows})
