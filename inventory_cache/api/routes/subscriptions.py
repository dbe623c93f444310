"""Back-in-stock subscriptions (scope `checkout`): the product page's "notify me" button."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from inventory_cache.api.data import subscriptions as data
from inventory_cache.api.deps import CheckoutKey, ServicesDep, owner_filter
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.subscriptions import SubscriptionIn, SubscriptionOut
from inventory_cache.errors import NotFound

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

SubscriptionId = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["sub-3f9c0e1a"]),
]


@router.post(
    "",
    response_model=SubscriptionOut,
    status_code=201,
    responses={
        200: {
            "model": SubscriptionOut,
            "description": "The same pending subscription was made before: the first one.",
        },
        **problem_responses(401, 403, 422, 503),
    },
    summary="Notify me when this SKU is back in stock",
)
async def subscribe(
    body: SubscriptionIn, services: ServicesDep, principal: CheckoutKey
) -> Response:
    """Notified once, when the SKU goes from 0 to available (201). Idempotent: the same
    pending subscription again from the same API key answers 200 with the first one. It
    belongs to that key: another `checkout` key cannot see it."""
    out, created = await services.postgres.run(
        data.create,
        sku=body.sku,
        webhook_url=body.webhook_url,
        subscriber_id=body.subscriber_id,
        allowed_hosts=services.settings.webhook_allowed_hosts,
        owner=principal.key_id,
    )
    return json_response(out, 201 if created else 200)


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A subscription: pending, or when it was notified",
)
async def get_subscription(
    subscription_id: SubscriptionId, services: ServicesDep, principal: CheckoutKey
) -> Response:
    """Another `checkout` key's subscription is 404, as an unknown one."""
    out = await services.postgres.run(data.find, subscription_id, owner_filter(principal))
    if out is None:
        raise NotFound(f"no subscription {subscription_id}")
    return json_response(out)
