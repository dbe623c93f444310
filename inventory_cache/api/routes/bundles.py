"""Bundles (kits): a SKU sold as a set of other SKUs (admin defines, anyone may read).

The definition lives in Redis (`inventory_cache/keys.py`, `Keys.bundle`), so availability
and reservations of a bundle need no PostgreSQL; the worker records every change in the
`bundles` table from the event stream, and warmup restores it from there. Availability of
a bundle is `GET /v1/availability/{bundle}`; a reservation line naming a bundle locks its
components (`StockEngine.reserve`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from inventory_cache.api.deps import AdminKey, ReadKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.bundles import BundleIn, BundleOut
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.models import Bundle, Component

router = APIRouter(prefix="/v1/bundles", tags=["bundles"])

SkuPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["phone-kit"])
]


def _out(b: Bundle) -> dict[str, object]:
    return {
        "sku": b.sku,
        "components": [{"sku": c.sku, "qty": c.qty} for c in b.components],
        "version": b.version,
    }


@router.put(
    "/{sku}",
    response_model=BundleOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Define or change a bundle",
)
async def put_bundle(sku: SkuPath, body: BundleIn, services: ServicesDep, _: AdminKey) -> Response:
    """Open reservations keep the components they locked; the new definition applies to
    orders placed from now on. The same definition again changes nothing."""
    bundle = await services.engine.put_bundle(
        sku, [Component(c.sku, c.qty) for c in body.components]
    )
    return json_response(_out(bundle))


@router.get(
    "/{sku}",
    response_model=BundleOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A bundle's definition",
)
async def get_bundle(sku: SkuPath, services: ServicesDep, _: ReadKey) -> Response:
    return json_response(_out(await services.engine.get_bundle(sku)))


@router.delete(
    "/{sku}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Delete a bundle",
)
async def delete_bundle(sku: SkuPath, services: ServicesDep, _: AdminKey) -> Response:
    """Open reservations keep the components they locked; the SKU no longer sells as a
    bundle (its availability is its own stock again)."""
    await services.engine.delete_bundle(sku)
    return Response(status_code=204)
