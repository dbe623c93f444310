"""Store terminals: a batch of sales, returns and counts (`warehouse`).

The answer is 200 with one result per event, in the order sent, even when some events
failed: each event stands alone (see `pos.py`). Only a malformed batch (bad location,
not 1 to 1,000 events, an event that is not an object or has no known `type`) is
refused whole with 422, and a Redis that is not loaded with 503
(send the batch again after warmup: what was applied replays).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from inventory_cache import pos
from inventory_cache.api.deps import BarcodesDep, ServicesDep, WarehouseKey
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.pos import PosBatchIn, PosBatchOut

router = APIRouter(prefix="/v1/pos", tags=["pos"])


@router.post(
    "/events",
    response_model=PosBatchOut,
    responses=problem_responses(401, 403, 413, 415, 422, 503),
    summary="Sales, returns and counts from a store's tills and scanners",
)
async def pos_events(
    body: PosBatchIn, services: ServicesDep, barcodes: BarcodesDep, _: WarehouseKey
) -> Response:
    results = await services.metrics.timed(
        "pos_events",
        pos.apply_batch(
            services.engine,
            barcodes,
            location=body.location,
            events=[e.model_dump(exclude_unset=True) for e in body.events],
        ),
    )
    counts = {"applied": 0, "replayed": 0, "error": 0}
    for r in results:
        counts[r.status] += 1
    return json_response(
        {
            "location": body.location,
            "applied": counts["applied"],
            "replayed": counts["replayed"],
            "failed": counts["error"],
            "results": [r.as_dict() for r in results],
        },
        replayed=counts["replayed"] == len(results),
    )
