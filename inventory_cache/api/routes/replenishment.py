"""Suggested purchase orders (scope `read`), from sales velocity in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from inventory_cache.api.data import replenishment as data
from inventory_cache.api.deps import ReadKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import Ident, iso_datetime
from inventory_cache.api.schemas.replenishment import ReplenishmentOut

router = APIRouter(prefix="/v1", tags=["replenishment"])


@router.get(
    "/replenishment",
    response_model=ReplenishmentOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="What to reorder, per sku and location",
)
async def replenishment(
    services: ServicesDep,
    _: ReadKey,
    sku: Annotated[Ident | None, Query()] = None,
    location: Annotated[Ident | None, Query()] = None,
    window_days: Annotated[int | None, Query(ge=1, le=365)] = None,
    cover_days: Annotated[int | None, Query(ge=0, le=365)] = None,
    all: Annotated[bool, Query(description="Also rows with nothing to order")] = False,
    method: Annotated[
        Literal["auto", "velocity"],
        Query(description="`velocity`: ignore stored forecasts (the earlier method)"),
    ] = "auto",
) -> Response:
    """Velocity (rows without `forecast`): reorder_point = max(policy's,
    ceil(avg_daily_sales x lead_time_days) + safety_stock); when on_hand - locked +
    in_transit <= reorder_point, suggested_qty = max(reorder_qty, reorder_point +
    ceil(avg_daily_sales x cover_days) - position).

    Forecast (rows with `forecast`, where the forecast job stored one): reorder_point =
    max(policy's, ceil(forecast demand over the lead time) + ceil(z(service_level) x rmse x
    sqrt(lead_time_days)) + safety_stock); suggested_qty = max(reorder_qty, order_up_to -
    position); `forecast.why` spells it out."""
    cfg = services.settings
    window = window_days or cfg.replenishment_window_days
    cover = cfg.replenishment_cover_days if cover_days is None else cover_days
    now = datetime.now(UTC)

    items = await services.postgres.run(
        data.suggestions,
        now=now,
        window_days=window,
        cover_days=cover,
        sku=sku,
        location=location,
        include_all=all,
        use_forecasts=method == "auto",
    )
    return json_response(
        {"as_of": iso_datetime(now), "window_days": window, "cover_days": cover, "items": items}
    )
