"""Per-location policies of a SKU: safety stock and the pre-order limit."""

from __future__ import annotations

from typing import Any

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.core import EngineCore, _level
from inventory_cache.models import Level


class Policies(EngineCore):
    """Safety stock and pre-order limits per (sku, location)."""

    async def set_safety_stock(self, *, sku: str, location: str, safety_stock: int) -> Level:
        v.ident(sku, "sku"), v.ident(location, "location")
        v.on_hand(safety_stock, "safety_stock")
        g = self.keys.group_of(sku)
        call = sc.set_safety_stock(
            ready=self.keys.ready(g),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            sku=sku,
            location=location,
            safety_stock=safety_stock,
            now=self.now(),
        )
        return _level(await self.run(call))

    async def preorder_limit(self, *, sku: str, location: str) -> int:
        v.ident(sku, "sku"), v.ident(location, "location")
        raw = await self.batcher.command("HGET", self.keys.stock(sku), f"p:{location}")
        return int(raw or 0)

    async def set_preorder_limit(self, *, sku: str, location: str, limit: int) -> dict[str, Any]:
        """The units of (sku, location) reservations may take from its incoming stock."""
        v.ident(sku, "sku"), v.ident(location, "location")
        v.on_hand(limit, "preorder_limit")
        g = self.keys.group_of(sku)
        call = sc.set_preorder_limit(
            ready=self.keys.ready(g),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            sku=sku,
            location=location,
            limit=limit,
            now=self.now(),
        )
        reply: dict[str, Any] = await self.run(call)
        return reply
