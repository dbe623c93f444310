"""Incoming stock and the pre-order lines it converts or uncovers (`/v1/incoming`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from inventory_cache.api.schemas.common import Count, Ident, Qty, StrictBody, iso_utc
from inventory_cache.models import Incoming


def parse_moment(value: str) -> int:
    """An ISO 8601 date or date-time as ms since the epoch; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected_at must be an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class IncomingIn(StrictBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ref": "po-1",
                    "sku": "phone-a",
                    "location": "north",
                    "qty": 40,
                    "expected_at": "2026-12-05",
                }
            ]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty
    expected_at: str = Field(
        max_length=40, description="ISO 8601 date or date-time (UTC when it names no zone)."
    )

    @field_validator("expected_at")
    @classmethod
    def _moment(cls, value: str) -> str:
        parse_moment(value)
        return value


class ReceiveIn(StrictBody):
    qty: Count | SkipJsonSchema[None] = Field(
        None, description="Units that came (default: the units expected)."
    )


class PreorderChangeOut(BaseModel):
    order_id: str
    sku: str
    location: str
    qty: int
    expected_at: str
    state: str = Field(description="`locked` (converted) or `uncovered`.")


class IncomingOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ref": "po-1",
                    "sku": "phone-a",
                    "location": "north",
                    "qty": 40,
                    "expected_at": "2026-12-05T00:00:00.000Z",
                    "status": "open",
                    "received_qty": 0,
                    "preorders": [],
                }
            ]
        }
    )

    ref: str
    sku: str
    location: str
    qty: int
    expected_at: str
    status: str = Field(description="`open`, `received` or `cancelled`.")
    received_qty: int
    preorders: list[PreorderChangeOut]

    @classmethod
    def of(cls, i: Incoming) -> dict[str, Any]:
        return {
            "ref": i.ref,
            "sku": i.sku,
            "location": i.location,
            "qty": i.qty,
            "expected_at": iso_utc(i.expected_at),
            "status": i.status,
            "received_qty": i.received_qty,
            "preorders": [
                {
                    "order_id": c.order_id,
                    "sku": c.sku,
                    "location": c.location,
                    "qty": c.qty,
                    "expected_at": iso_utc(c.expected_at),
                    "state": c.state,
                }
                for c in i.preorders
            ],
        }
