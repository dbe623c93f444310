"""Per-customer limits per SKU: at most N units per customer, over the SKU's lifetime or a
rolling window (a flash sale's "2 per customer").

The limit lives in Redis, in the SKU's slot group, so that `reserve-4.lua` checks and counts
it in the same call that locks the stock; `PUT` and `DELETE` go through the engine
(`set_limit-3.lua`) and reach PostgreSQL through the event stream like every other change,
so these routes keep working while PostgreSQL is away.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from inventory_cache.api.deps import AdminKey, EngineDep, ReadKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN, Ident
from inventory_cache.api.schemas.limits import LimitIn, LimitOut
from inventory_cache.models import CustomerLimit

router = APIRouter(prefix="/v1/limits", tags=["limits"])

SkuPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["phone-a"])
]


def _out(limit: CustomerLimit) -> dict[str, object]:
    out: dict[str, object] = {"sku": limit.sku, "per_customer": limit.per_customer}
    if limit.window_seconds is not None:
        out["window_seconds"] = limit.window_seconds
    return out


@router.put(
    "/{sku}",
    response_model=LimitOut,
    responses=problem_responses(401, 403, 413, 415, 422, 503),
    summary="Set the per-customer limit of a SKU",
)
async def put_limit(sku: SkuPath, body: LimitIn, engine: EngineDep, _: AdminKey) -> Response:
    """Counts from the next reservation; changing the units or the window of a limit keeps
    what customers already hold."""
    limit = await engine.set_limit(
        sku=sku, per_customer=body.per_customer, window_seconds=body.window_seconds
    )
    return json_response(_out(limit))


@router.get(
    "/{sku}",
    response_model=LimitOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="The per-customer limit of a SKU",
)
async def get_limit(
    sku: SkuPath,
    engine: EngineDep,
    _: ReadKey,
    customer_id: Annotated[
        Ident | None, Query(description="Also say what this customer holds and may take.")
    ] = None,
) -> Response:
    limit = await engine.get_limit(sku)
    out = _out(limit)
    if customer_id is not None:
        held = await engine.customer_holds(sku, customer_id)
        out.update(customer_id=customer_id, held=held, allowed=max(limit.per_customer - held, 0))
    return json_response(out)


@router.delete(
    "/{sku}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Remove the per-customer limit of a SKU",
)
async def delete_limit(sku: SkuPath, engine: EngineDep, _: AdminKey) -> Response:
    """What customers held goes with it: a limit set again starts every customer at zero."""
    await engine.delete_limit(sku)
    return Response(status_code=204)
