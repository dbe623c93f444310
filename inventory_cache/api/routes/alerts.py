"""Stock alerts (scope `read`): low stock, oversold and uncovered pre-orders, as the
scheduler raised them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from inventory_cache.api.data import alerts as data
from inventory_cache.api.deps import ReadKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.alerts import AlertsOut
from inventory_cache.api.schemas.common import Ident

router = APIRouter(prefix="/v1", tags=["alerts"])


@router.get(
    "/alerts",
    response_model=AlertsOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Low-stock and oversold alerts, newest first",
)
async def alerts(
    services: ServicesDep,
    _: ReadKey,
    sku: Annotated[Ident | None, Query()] = None,
    location: Annotated[Ident | None, Query()] = None,
    kind: Annotated[Literal["low_stock", "oversold", "uncovered"] | None, Query()] = None,
    active: Annotated[bool, Query(description="false: cleared ones too")] = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """`low_stock`: available <= the policy's reorder_point; `oversold`: locked > on_hand;
    `uncovered`: pre-orders there lost their incoming stock (`details` names the orders).
    One alert per crossing of the threshold; `cleared_at` is set when the level recovers."""
    items = await services.postgres.run(
        data.alerts, active_only=active, sku=sku, location=location, kind=kind, limit=limit
    )
    return json_response({"items": items})
