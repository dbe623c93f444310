"""Orders: reservation requests and the reservation as answered (`/v1/reservations`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from inventory_cache import validation as v
from inventory_cache.api.schemas.bundles import ComponentOut
from inventory_cache.api.schemas.common import Ident, Qty, StrictBody, iso_utc
from inventory_cache.models import Reservation, ReservedLine


class LineIn(StrictBody):
    sku: Ident
    qty: Qty
    location: Ident | SkipJsonSchema[None] = None


class ReservationIn(StrictBody):
    """Lock stock for an order; a line without `location` gets one chosen by priority."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1",
                    "lines": [{"sku": "phone-a", "qty": 2}, {"sku": "case-b", "qty": 1}],
                    "ttl_seconds": 900,
                }
            ]
        }
    )

    order_id: Ident
    lines: list[LineIn] = Field(min_length=1, max_length=v.MAX_LINES)
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=30 * 86400)] | SkipJsonSchema[None] = (
        None
    )
    # Required when a line's SKU has a per-customer limit (`PUT /v1/limits/{sku}`).
    customer_id: Ident | SkipJsonSchema[None] = None


class LineOut(BaseModel):
    sku: str
    qty: int
    location: str
    preorder: bool | SkipJsonSchema[None] = Field(
        None, description="Only on a pre-order line: units covered by incoming stock."
    )
    expected_at: datetime | SkipJsonSchema[None] = Field(
        None, description="A pre-order line's date: when its incoming stock is due."
    )
    preorder_status: Literal["awaiting", "locked", "uncovered"] | SkipJsonSchema[None] = Field(
        None,
        description="A pre-order line of an active order: `awaiting` its incoming stock, "
        "`locked` (the stock came; an ordinary lock now) or `uncovered` (the incoming stock "
        "was cancelled or came short: the order cannot ship until it is cancelled).",
    )


def line_out(ln: ReservedLine) -> dict[str, Any]:
    out: dict[str, Any] = {"sku": ln.sku, "qty": ln.qty, "location": ln.location}
    if ln.preorder:
        out["preorder"] = True
        out["expected_at"] = iso_utc(ln.expected_at or 0)
        if ln.preorder_status is not None:
            out["preorder_status"] = ln.preorder_status
    return out


class BundleLineOut(BaseModel):
    """A bundle line: `qty` bundles; `components` the units of each component locked for
    it (included in the order's `lines`, which sum them with any other line of the SKU)."""

    sku: str
    qty: int
    location: str | SkipJsonSchema[None] = None
    components: list[ComponentOut]


class ReservationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1",
                    "status": "active",
                    "expires_at": "2026-11-22T10:15:00.000Z",
                    "lines": [{"sku": "phone-a", "qty": 2, "location": "north"}],
                }
            ]
        }
    )

    order_id: str
    status: Literal["active", "cancelled", "expired", "shipped"]
    expires_at: datetime
    lines: list[LineOut]
    bundles: list[BundleLineOut] | SkipJsonSchema[None] = Field(
        None, description="Only when the order has bundle lines."
    )

    @classmethod
    def of(cls, r: Reservation) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order_id": r.order_id,
            "status": r.status,
            "expires_at": iso_utc(r.expires_at),
            "lines": [line_out(ln) for ln in r.lines],
        }
        if r.bundles:
            out["bundles"] = [
                {
                    "sku": b.sku,
                    "qty": b.qty,
                    **({"location": b.location} if b.location else {}),
                    "components": [{"sku": c.sku, "qty": c.qty} for c in b.components],
                }
                for b in r.bundles
            ]
        return out
