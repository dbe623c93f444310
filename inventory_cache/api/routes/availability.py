"""The product page's read: one round trip to Redis at most, usually none (near-cache)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from inventory_cache import validation as v
from inventory_cache.api.deps import AvailabilityReader, check_availability_reader
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_bytes
from inventory_cache.api.schemas.availability import AvailabilityBatchOut, AvailabilityOut
from inventory_cache.api.schemas.common import IDENT_PATTERN, Ident
from inventory_cache.errors import ValidationError
from inventory_cache.validation import IDENT

router = APIRouter(prefix="/v1/availability", tags=["availability"])

SkuPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["phone-a"])
]


# The hottest route takes no FastAPI dependency or validated parameter: resolving them
# costs more than the whole answer when it comes from the near-cache (measured: about
# half of the route's time). So it reads its parameter and checks the key itself, and
# declares the parameter for the OpenAPI document here.
_SKU_PARAMETER = {
    "name": "sku",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": IDENT_PATTERN},
    "example": "phone-a",
}


@router.get(
    "/{sku}",
    response_model=AvailabilityOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Sellable units of one SKU",
    openapi_extra={"parameters": [_SKU_PARAMETER]},
)
async def availability(request: Request) -> Response:
    """Available units in total and per location; an unknown SKU has 0 (`in_stock: false`).

    May be up to `INVENTORY_NEAR_CACHE_MS` (default 250 ms) stale; a reservation always
    checks live stock. Needs the `read` scope unless INVENTORY_PUBLIC_READS is set.
    """
    services = request.app.state.services
    await check_availability_reader(services, request.headers.get("authorization"), request.scope)
    sku: str = request.path_params["sku"]
    if not IDENT.match(sku):
        raise ValidationError("sku must be 1-64 characters of [A-Za-z0-9._:-]", field="sku")
    return json_bytes(await services.near_cache.one(sku))


@router.get(
    "",
    response_model=AvailabilityBatchOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Sellable units of several SKUs",
)
async def availability_batch(
    request: Request,
    _: AvailabilityReader,
    sku: Annotated[
        list[Ident],
        Query(
            min_length=1,
            max_length=v.MAX_BATCH_SKUS,
            description="Repeat for each SKU: `?sku=A&sku=B` (1 to 200).",
        ),
    ],
) -> Response:
    """`items` in request order, one per `sku` parameter; one Redis round trip per slot."""
    return json_bytes(await request.app.state.services.near_cache.many(sku))
