"""Back-in-stock subscriptions (scope `checkout`): the product page's "notify me" button."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from inventory_cache.api.deps import CheckoutKey, ServicesDep, owner_filter
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas import IDENT_PATTERN, Ident, StrictBody, iso_datetime
from inventory_cache.errors import NotFound
from inventory_cache.subscriptions import create_subscription, visible_to
from persistence.models import Subscription

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

SubscriptionId = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, examples=["sub-3f9c0e1a"]),
]


class SubscriptionIn(StrictBody):
    """Exactly one of `webhook_url` (its host must be on the service's allowlist) and
    `subscriber_id` (passed on to the shop's own notification webhook)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["webhook_url"]}, {"required": ["subscriber_id"]}],
            "examples": [{"sku": "phone-a", "subscriber_id": "customer-42"}],
        }
    )

    sku: Ident
    webhook_url: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    subscriber_id: Ident | None = None


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "sub-3f9c2a7d1e8b4c60a1d2e3f405162738",
                    "sku": "earbuds-d",
                    "status": "pending",
                    "created_at": "2026-11-28T02:01:18.000Z",
                    "subscriber_id": "customer-42",
                }
            ]
        }
    )

    id: str = Field(description="Random: not derived from other subscriptions' ids.")
    sku: str
    status: Literal["pending", "notified"]
    webhook_url: str | None = None
    subscriber_id: str | None = None
    created_at: str
    notified_at: str | None = None


def _out(sub: Subscription) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.public_id,
        "sku": sub.sku,
        "status": "pending" if sub.notified_at is None else "notified",
        "created_at": iso_datetime(sub.created_at),
    }
    if sub.webhook_url is not None:
        out["webhook_url"] = sub.webhook_url
    if sub.subscriber_id is not None:
        out["subscriber_id"] = sub.subscriber_id
    if sub.notified_at is not None:
        out["notified_at"] = iso_datetime(sub.notified_at)
    return out


def _create(
    db: Engine, body: SubscriptionIn, allowed: list[str], owner: str
) -> tuple[dict[str, Any], bool]:
    with Session(db, expire_on_commit=False) as s:
        sub, created = create_subscription(
            s,
            sku=body.sku,
            webhook_url=body.webhook_url,
            subscriber_id=body.subscriber_id,
            allowed_hosts=allowed,
            owner=owner,
        )
        return _out(sub), created


def _get(db: Engine, public_id: str, owner: str | None) -> dict[str, Any] | None:
    with Session(db) as s:
        sub = s.scalars(select(Subscription).where(Subscription.public_id == public_id)).first()
        return None if sub is None or not visible_to(sub, owner) else _out(sub)


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
    out, created = await to_thread.run_sync(
        _create,
        services.ledger.db,
        body,
        services.settings.webhook_allowed_hosts,
        principal.key_id,
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
    out = await to_thread.run_sync(
        _get, services.ledger.db, subscription_id, owner_filter(principal)
    )
    if out is None:
        raise NotFound(f"no subscription {subscription_id}")
    return json_response(out)
