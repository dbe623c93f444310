"""Request and response bodies of the API, with the limits of `validation.py` in the schema.

Request bodies are strict: unknown fields are refused and integers must be JSON integers
(`1.5`, `"3"` and `true` are 422), so the OpenAPI document tells clients exactly what is
accepted. The engine checks the same rules again; these models are the first gate and
the documentation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from inventory_cache import validation as v
from inventory_cache.models import Level, Reservation, ReservedLine, Transfer

IDENT_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

# No example of its own: an identifier is a SKU, a location or a ref, and each model's
# example shows which (with the demo's catalogue, so "Try it out" works on the demo).
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
Qty = Annotated[int, Field(strict=True, ge=1, le=v.MAX_QTY, examples=[2])]
Count = Annotated[int, Field(strict=True, ge=0, le=v.MAX_ON_HAND)]


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC, `2026-11-22T10:15:00.000Z`."""
    return iso_datetime(datetime.fromtimestamp(ms / 1000, UTC))


def iso_datetime(dt: datetime) -> str:
    """ISO-8601 UTC with a `Z`; a naive time (SQLite, the demo) is taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nulls(cls, value: Any, info: ValidationInfo) -> Any:
        """An optional field is omitted, never `null`: the schema admits no null anywhere."""
        if value is None:
            raise ValueError(f"{info.field_name} must not be null (omit an optional field)")
        return value


# ---------------------------------------------------------------------------- requests
class InboundIn(StrictBody):
    """Goods received at a location (a purchase order, a delivery note)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ref": "po-1", "sku": "phone-a", "location": "north", "qty": 10}]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty


class AdjustmentIn(StrictBody):
    """A correction of on_hand: `delta`, or a count `set_on_hand`; exactly one of them.

    `expected_on_hand` turns it into a compare-and-set: refused with 409 `invalid_state`
    when on_hand is not what the counter saw.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["delta"]}, {"required": ["set_on_hand"]}],
            "examples": [
                {
                    "ref": "ADJ-7",
                    "sku": "phone-a",
                    "location": "north",
                    "delta": -2,
                    "reason": "damage",
                },
                {
                    "ref": "CNT-3",
                    "sku": "phone-a",
                    "location": "north",
                    "set_on_hand": 42,
                    "expected_on_hand": 40,
                    "reason": "count",
                },
            ],
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    reason: Literal["damage", "loss", "found", "count", "correction", "reconcile"]
    delta: (
        Annotated[
            int,
            Field(
                strict=True,
                ge=-v.MAX_QTY,
                le=v.MAX_QTY,
                json_schema_extra={"not": {"const": 0}},
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    set_on_hand: Count | SkipJsonSchema[None] = None
    expected_on_hand: Count | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _one_change(self) -> AdjustmentIn:
        if (self.delta is None) == (self.set_on_hand is None):
            raise ValueError("give exactly one of delta and set_on_hand")
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        return self


class ReturnIn(StrictBody):
    """A customer return; `restock: false` records it without adding to on_hand."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ref": "RMA-9", "sku": "phone-a", "location": "north", "qty": 1, "restock": True}
            ]
        }
    )

    ref: Ident
    sku: Ident
    location: Ident
    qty: Qty
    restock: bool


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


class TransferIn(StrictBody):
    """Move stock between locations: locks at the source until shipped or cancelled."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "t-1",
                    "sku": "phone-a",
                    "from_location": "north",
                    "to_location": "south",
                    "qty": 100,
                }
            ]
        }
    )

    transfer_id: Ident
    sku: Ident
    from_location: Ident
    to_location: Ident
    qty: Qty


# ---------------------------------------------------------------------------- responses
class PromiseOut(BaseModel):
    date: str = Field(description="A UTC date, YYYY-MM-DD.")
    qty: int


class AvailabilityOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "available": 12,
                    "in_stock": True,
                    "locations": {"north": 9, "south": 3},
                }
            ]
        }
    )

    sku: str
    available: int = Field(ge=0)
    in_stock: bool
    locations: dict[str, int]
    available_to_promise: list[PromiseOut] | SkipJsonSchema[None] = Field(
        None,
        description="Only when incoming stock is open: for each date some is due, the "
        "units that can be promised for delivery by then (available now, plus incoming "
        "due by that date that no pre-order holds).",
    )


class AvailabilityBatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "sku": "phone-a",
                            "available": 12,
                            "in_stock": True,
                            "locations": {"north": 12},
                        },
                        {"sku": "earbuds-d", "available": 0, "in_stock": False, "locations": {}},
                    ]
                }
            ]
        }
    )

    items: list[AvailabilityOut]


class LevelOut(BaseModel):
    """The levels of one (sku, location) after a change."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "location": "north",
                    "on_hand": 10,
                    "locked": 1,
                    "safety_stock": 0,
                    "available": 9,
                }
            ]
        }
    )

    sku: str
    location: str
    on_hand: int
    locked: int
    safety_stock: int
    available: int = Field(ge=0)

    @classmethod
    def of(cls, lv: Level) -> dict[str, Any]:
        return {
            "sku": lv.sku,
            "location": lv.location,
            "on_hand": lv.on_hand,
            "locked": lv.locked,
            "safety_stock": lv.safety_stock,
            "available": lv.available,
        }


class Levels(BaseModel):
    on_hand: int
    locked: int
    safety_stock: int
    available: int = Field(ge=0)


class StockOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "phone-a",
                    "locations": {
                        "north": {"on_hand": 10, "locked": 1, "safety_stock": 0, "available": 9}
                    },
                }
            ]
        }
    )

    sku: str
    locations: dict[str, Levels]


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


class ComponentOut(BaseModel):
    sku: str
    qty: int


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


class TransferOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "t-1",
                    "status": "requested",
                    "sku": "phone-a",
                    "from_location": "north",
                    "to_location": "south",
                    "qty": 100,
                }
            ]
        }
    )

    transfer_id: str
    status: Literal["requested", "in_transit", "received", "cancelled"]
    sku: str
    from_location: str
    to_location: str
    qty: int

    @classmethod
    def of(cls, t: Transfer) -> dict[str, Any]:
        return {
            "transfer_id": t.transfer_id,
            "status": t.status,
            "sku": t.sku,
            "from_location": t.from_location,
            "to_location": t.to_location,
            "qty": t.qty,
        }


class Status(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    """`ready`, or `degraded` (PostgreSQL away, Redis serving) with what is missing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready"},
                {
                    "status": "degraded",
                    "redis": True,
                    "postgres": False,
                    "detail": "PostgreSQL unreachable: checkout and stock reads go on; "
                    "the ledger's routes answer 503 until it is back",
                },
            ]
        }
    )

    status: Literal["ready", "degraded"]
    redis: bool | None = None
    postgres: bool | None = None
    detail: str | None = None


class MovementOut(BaseModel):
    """One ledger row: the change of one (sku, location) by one operation."""

    id: int = Field(description="Recording order; pass as `before` to page back.")
    op_id: str = Field(examples=["reserve:o-1:3f2a9c0d1b2e"])
    sku: str
    location: str
    type: str = Field(examples=["reserve"])
    reason: str
    ref: str
    delta_on_hand: int
    delta_locked: int
    on_hand_after: int
    locked_after: int
    created_at: datetime
    bundle: str | SkipJsonSchema[None] = Field(
        None,
        description="Only on component rows of bundle lines: the bundles, comma-separated.",
    )


class MovementsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 1042,
                            "op_id": "reserve:o-1:3f2a9c0d1b2e",
                            "sku": "phone-a",
                            "location": "north",
                            "type": "reserve",
                            "reason": "reserve",
                            "ref": "o-1",
                            "delta_on_hand": 0,
                            "delta_locked": 2,
                            "on_hand_after": 10,
                            "locked_after": 2,
                            "created_at": "2026-11-22T10:15:00.000Z",
                        }
                    ]
                }
            ]
        }
    )

    items: list[MovementOut]
