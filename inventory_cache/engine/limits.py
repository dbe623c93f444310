"""Per-customer limits of a SKU (`set_limit-3.lua`) and what a customer holds."""

from __future__ import annotations

from typing import Any

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.reads import Reads
from inventory_cache.errors import NotFound, NotReady, ValidationError
from inventory_cache.models import CustomerLimit


class Limits(Reads):
    """Per-customer limits and what a customer holds against them."""

    async def set_limit(
        self, *, sku: str, per_customer: int, window_seconds: int | None = None
    ) -> CustomerLimit:
        """At most `per_customer` units of `sku` per customer, over a rolling window of
        `window_seconds` or (None) the SKU's lifetime; counted from the next reservation.

        Not on a bundle's SKU: a bundle line is reserved as its components, whose own
        limits are checked then, and a limit of the bundle's SKU would never be. Checked
        before the write, as `put_bundle` checks the other way round.

        Raises:
            ValidationError: a bad value, or `sku` is a bundle.
        """
        v.ident(sku, "sku")
        v.qty(per_customer, "per_customer")
        if window_seconds is not None:
            v.window(window_seconds)
        if await self._definitions([sku]):
            raise ValidationError(
                f"{sku} is a bundle: it sells as its components, so a limit on it would never "
                "be checked; limit its components instead",
                field="sku",
            )
        await self._set_limit(sku, per_customer, window_seconds or 0)
        return CustomerLimit(sku, per_customer, window_seconds)

    async def delete_limit(self, sku: str) -> None:
        """Remove the limit; the counts go with it (a limit set again starts from zero).

        Raises:
            NotFound: the SKU has no limit.
        """
        v.ident(sku, "sku")
        reply = await self._set_limit(sku, 0, 0)
        if not reply["previous"]:
            raise NotFound(f"no per-customer limit on {sku}")

    async def _set_limit(self, sku: str, per_customer: int, window: int) -> dict[str, Any]:
        g = self.keys.group_of(sku)
        call = sc.set_limit(
            ready=self.keys.ready(g),
            limit=self.keys.limit(sku),
            events=self.keys.events(g),
            sku=sku,
            per_customer=per_customer,
            window_seconds=window,
            now=self.now(),
        )
        reply: dict[str, Any] = await self.run(call)
        return reply

    async def get_limit(self, sku: str) -> CustomerLimit:
        v.ident(sku, "sku")
        results = await self.batcher.many(
            [
                (None, ("EXISTS", self.keys.ready(self.keys.group_of(sku)))),
                (None, ("HMGET", self.keys.limit(sku), "n", "w")),
            ]
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        ready, (n, w) = results
        if not ready:
            raise NotReady("stock cache not loaded: run warmup")
        if not int(n or 0):
            raise NotFound(f"no per-customer limit on {sku}")
        return CustomerLimit(sku, int(n), int(w) or None)

    async def customer_holds(self, sku: str, customer_id: str) -> int:
        """Units of `sku` the customer holds against its limit now (0 without a limit)."""
        v.ident(sku, "sku"), v.ident(customer_id, "customer_id")
        limit, count = self.keys.limit(sku), self.keys.customer_count(sku, customer_id)
        results = await self.batcher.many(
            [
                (None, ("HMGET", limit, "n", "w", "gen")),
                (None, ("ZSCORE", count, "@")),
                (None, ("ZSCORE", count, "#")),
            ]
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        (n, w, gen), meta, total = results
        if not int(n or 0) or meta is None or -float(meta) != int(gen):
            return 0
        held = -int(float(total or 0))
        if int(w or 0):
            cutoff = self.now() - int(w) * 1000
            gone = await self.batcher.command("ZRANGEBYSCORE", count, "(0", cutoff)
            held -= sum(int(m.split(b":", 1)[0]) for m in gone)
        return held
