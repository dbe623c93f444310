"""Stock policies per (sku, location): safety stock, reorder point and quantity, lead time,
pre-order limit.

`PUT` stores the policy in PostgreSQL and applies `safety_stock` and `preorder_limit` to
Redis through the engine (`set_safety_stock`, `set_preorder_limit`), so availability and
reservations change at once; the pre-order limit lives in Redis (and, through the event
stream, in the ledger's `preorder_policies`), where the reserve scripts read it. It holds
the policy row locked meanwhile (PUTs of one pair take turns), and Redis goes first inside that
transaction, so a Redis that is not ready (503) leaves nothing stored. Its low-stock
condition is then evaluated against the current levels, so a raised reorder point
alerts now rather than at the SKU's next movement.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Path
from sqlalchemy.orm import sessionmaker
from starlette.responses import Response

from inventory_cache.alerts import AlertMonitor, Observation
from inventory_cache.api.data import policies as data
from inventory_cache.api.deps import AdminKey, ReadKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.policies import PolicyIn, PolicyOut
from inventory_cache.api.schemas.stock import LevelOut
from inventory_cache.errors import NotFound

router = APIRouter(prefix="/v1/policies", tags=["policies"])


SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
LocationPath = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN)]


@router.put(
    "/{sku}/{location}",
    response_model=PolicyOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="Set the stock policy of a (sku, location)",
)
async def put_policy(
    sku: SkuPath, location: LocationPath, body: PolicyIn, services: ServicesDep, _: AdminKey
) -> Response:
    """Stores the policy and applies its safety stock; answers it with the new levels."""
    session = await services.postgres.run(data.lock, sku, location)
    try:
        level = await services.engine.set_safety_stock(
            sku=sku, location=location, safety_stock=body.safety_stock
        )
        await services.engine.set_preorder_limit(
            sku=sku, location=location, limit=body.preorder_limit
        )
    except BaseException:
        await to_thread.run_sync(session.close)  # rolls back: nothing stored
        raise
    stored = await to_thread.run_sync(
        partial(
            data.store,
            session,
            sku,
            location,
            safety_stock=body.safety_stock,
            reorder_point=body.reorder_point,
            reorder_qty=body.reorder_qty,
            lead_time_days=body.lead_time_days,
            service_level=body.service_level,
            order_up_to=body.order_up_to,
        )
    )
    sessions = sessionmaker(services.postgres.engine, expire_on_commit=False)
    monitor = AlertMonitor(services.engine, sessions)
    await monitor.evaluate(
        [
            Observation(
                sku,
                location,
                level.on_hand,
                level.locked,
                level.safety_stock,
                services.engine.now(),
            )
        ]
    )
    return json_response(
        {**stored, "preorder_limit": body.preorder_limit, "levels": LevelOut.of(level)}
    )


@router.get(
    "/{sku}/{location}",
    response_model=PolicyOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="The stock policy of a (sku, location)",
)
async def get_policy(
    sku: SkuPath, location: LocationPath, services: ServicesDep, _: ReadKey
) -> Response:
    stored = await services.postgres.run(data.load, sku, location)
    if stored is None:
        raise NotFound(f"no policy for {sku} at {location}")
    limit = await services.engine.preorder_limit(sku=sku, location=location)
    return json_response({**stored, "preorder_limit": limit})
