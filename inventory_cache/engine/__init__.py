"""The stock engine: every state change is one Lua script call per slot group.

`StockEngine` is one façade over capabilities kept apart, each a module of its own:

- `reservations`: the reserve path in one look (one `reserve_order-2.lua` call where the
  order's keys can meet, else index, parts per group, commit or compensate);
- `settlement`: cancel and ship, decided on the order index, then settled on each part;
- `expiry`: the expiry sweep;
- `orders`: an order as Redis holds it (index, parts, pre-order states), and its owner;
- `transfers`: transfers between locations;
- `movements`: on-hand movements (inbound, adjust, returns, till events);
- `policies`: safety stock and pre-order limits; `limits`: per-customer limits;
- `bundles`: bundle definitions and their expansion into components;
- `reads`: availability and stock levels;
- `core`: what they share: clients, keys, the script runner (`script_calls` handles run
  by `script_exec`), readiness, the rate limiter.
"""

from __future__ import annotations

from inventory_cache.engine.core import Clock, _is_cluster, fingerprint, parse_stock, wall_clock_ms
from inventory_cache.engine.expiry import Expiry
from inventory_cache.engine.limits import Limits
from inventory_cache.engine.movements import Movements
from inventory_cache.engine.orders import owned_by, owner_tag, reserved_bundles
from inventory_cache.engine.policies import Policies
from inventory_cache.engine.reservations import Reservations
from inventory_cache.engine.transfers import Transfers

__all__ = [
    "Clock",
    "StockEngine",
    "_is_cluster",
    "fingerprint",
    "owned_by",
    "owner_tag",
    "parse_stock",
    "reserved_bundles",
    "wall_clock_ms",
]


class StockEngine(Reservations, Expiry, Transfers, Movements, Policies, Limits):
    """Async façade over the Lua scripts; one instance per process and event loop."""
