"""Every level of a SKU at every location, read live (never from the near-cache)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from inventory_cache.api.deps import EngineDep, ReadKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.routes.availability import SkuPath
from inventory_cache.api.schemas.stock import StockOut

router = APIRouter(prefix="/v1/stock", tags=["stock"])


@router.get(
    "/{sku}",
    response_model=StockOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="on_hand, locked, safety_stock and available per location",
)
async def stock(sku: SkuPath, engine: EngineDep, _: ReadKey) -> Response:
    view = await engine.stock(sku)
    return json_response(
        {
            "sku": view.sku,
            "locations": {
                loc: {
                    "on_hand": lv.on_hand,
                    "locked": lv.locked,
                    "safety_stock": lv.safety_stock,
                    "available": lv.available,
                }
                for loc, lv in view.locations.items()
            },
        }
    )
