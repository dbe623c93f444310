"""Typed results of the engine; the API serialises them, the tests compare them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ReservationStatus = Literal["active", "cancelled", "expired", "shipped"]
TransferStatus = Literal["requested", "in_transit", "received", "cancelled"]


@dataclass(frozen=True, slots=True)
class Level:
    """One (sku, location); `available` is max(0, on_hand - locked - safety_stock)."""

    sku: str
    location: str
    on_hand: int
    locked: int
    safety_stock: int
    available: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Availability:
    sku: str
    available: int
    in_stock: bool
    locations: dict[str, int]
    # A bundle's components: its answer changes when theirs do (the near-cache's concern).
    components: tuple[str, ...] = ()
    # (UTC date, units promisable for delivery by then), when incoming stock is open.
    available_to_promise: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Component:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class Bundle:
    """A SKU sold as a set of other SKUs: one of it is `qty` of each component."""

    sku: str
    components: list[Component]
    version: int = 0


@dataclass(frozen=True, slots=True)
class StockView:
    sku: str
    locations: dict[str, Level]


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    qty: int
    location: str | None = None


@dataclass(frozen=True, slots=True)
class ReservedLine:
    """A line as reserved. A pre-order line (`preorder`) is covered by incoming stock
    due at `expected_at` (ms): `preorder_status` says whether it still awaits that stock
    (`awaiting`), became an ordinary lock when the stock came (`locked`) or lost its
    cover when the stock was cancelled or came short (`uncovered`)."""

    sku: str
    qty: int
    location: str
    preorder: bool = False
    expected_at: int | None = None
    preorder_status: str | None = None


@dataclass(frozen=True, slots=True)
class ReservedBundle:
    """A bundle line of an order: `qty` bundles, `components` the units of each component
    it took (its share of the order's `lines`)."""

    sku: str
    qty: int
    location: str | None
    components: list[Component]


@dataclass(frozen=True, slots=True)
class Reservation:
    order_id: str
    status: ReservationStatus
    expires_at: int  # ms since epoch
    lines: list[ReservedLine] = field(default_factory=list)
    replayed: bool = False
    bundles: list[ReservedBundle] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    status: TransferStatus
    sku: str
    from_location: str
    to_location: str
    qty: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class PreorderChange:
    """A pre-order line whose state an incoming change moved: `locked` (converted into a
    lock when the stock came) or `uncovered` (its incoming stock was cancelled or came
    short)."""

    order_id: str
    sku: str
    location: str
    qty: int
    expected_at: int  # ms since epoch
    state: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """Stock expected at a location: `qty` units due at `expected_at` (ms). `status` is
    `open`, `received` (`received_qty` booked on hand) or `cancelled`."""

    ref: str
    sku: str
    location: str
    qty: int
    expected_at: int
    status: str
    received_qty: int = 0
    created: bool = False
    replayed: bool = False
    preorders: list[PreorderChange] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CustomerLimit:
    """At most `per_customer` units of `sku` per customer, over `window_seconds` (None:
    the SKU's lifetime)."""

    sku: str
    per_customer: int
    window_seconds: int | None
