"""Back-in-stock subscriptions (`/v1/subscriptions`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from inventory_cache.api.schemas.common import Ident, StrictBody


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
