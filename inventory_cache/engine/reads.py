"""Reads: availability and stock levels (plain commands, the group's readiness marker
in the same round trip), and the bundle and limit lookups other capabilities check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from inventory_cache import validation as v
from inventory_cache.engine.core import EngineCore, _components, parse_stock, stock_fields
from inventory_cache.errors import NotReady, ValidationError
from inventory_cache.incoming import available_to_promise
from inventory_cache.models import Availability, Component, Level, StockView
from inventory_cache.scripts import Command
from persistence.events import available


def plain_availability(sku: str, raw: Mapping[bytes, bytes]) -> Availability | None:
    """A SKU's availability straight from its stock hash in one pass; None when the SKU is
    a bundle or has incoming stock, whose answers need the full path (`_sellable`).

    The availability read is the route product pages call thousands of times a second, and
    building a `Level` per location only to keep its `available` doubled its cost.
    """
    levels, plain = stock_fields(raw)
    if not plain:
        return None
    locations = {loc.decode(): available(o, lk, s) for loc, (o, lk, s) in sorted(levels.items())}
    total = sum(locations.values())
    return Availability(sku=sku, available=total, in_stock=total > 0, locations=locations)


class Reads(EngineCore):
    """Availability and stock levels, and the lookups other capabilities check."""

    async def _read_stock(self, skus: Sequence[str]) -> list[dict[str, Level]]:
        cmds: list[Command] = []
        for sku in skus:
            cmds.append((None, ("EXISTS", self.keys.ready(self.keys.group_of(sku)))))
            cmds.append((None, ("HGETALL", self.keys.stock(sku))))
        results = await self.batcher.many(cmds)
        out = []
        for i, sku in enumerate(skus):
            ready, raw = results[2 * i], results[2 * i + 1]
            for r in (ready, raw):
                if isinstance(r, BaseException):
                    raise r
            if not ready:
                raise NotReady("stock cache not loaded: run warmup")
            out.append(parse_stock(sku, raw))
        return out

    @staticmethod
    def _availability(sku: str, levels: dict[str, Level]) -> Availability:
        locations = {loc: lv.available for loc, lv in levels.items()}
        total = sum(locations.values())
        return Availability(sku=sku, available=total, in_stock=total > 0, locations=locations)

    @staticmethod
    def _bundle_availability(
        sku: str, components: Sequence[Component], levels: Mapping[str, dict[str, Level]]
    ) -> Availability:
        """Whole bundles: per location, what every component there covers; in total, what
        their totals cover (a line without a location may take each component from
        several locations, as `reserve-4.lua` splits a line)."""
        locs = sorted({loc for c in components for loc in levels[c.sku]})
        locations = {
            loc: min(
                levels[c.sku][loc].available // c.qty if loc in levels[c.sku] else 0
                for c in components
            )
            for loc in locs
        }
        total = min(sum(lv.available for lv in levels[c.sku].values()) // c.qty for c in components)
        return Availability(sku, total, total > 0, locations, tuple(c.sku for c in components))

    async def _sellable(self, skus: Sequence[str]) -> list[Availability]:
        """Availability of SKUs that may be bundles: a bundle's definition is a field of its
        stock hash (`bdef`, see `bundle_set-4.lua`), so it comes with the stock; a bundle's
        components cost one more round trip."""
        cmds: list[Command] = []
        for sku in skus:
            cmds.append((None, ("EXISTS", self.keys.ready(self.keys.group_of(sku)))))
            cmds.append((None, ("HGETALL", self.keys.stock(sku))))
        results = await self.batcher.many(cmds)
        out: list[Availability | None] = []
        bundles: dict[int, list[Component]] = {}
        for i, sku in enumerate(skus):
            ready, raw = results[2 * i : 2 * i + 2]
            for r in (ready, raw):
                if isinstance(r, BaseException):
                    raise r
            if not ready:
                raise NotReady("stock cache not loaded: run warmup")
            plain = plain_availability(sku, raw)
            if plain is not None:
                out.append(plain)
                continue
            components = _components(raw.get(b"bdef"))
            if components:
                bundles[i] = components
                out.append(None)
            else:
                own = parse_stock(sku, raw)
                found = self._availability(sku, own)
                promise = available_to_promise(raw, own)
                out.append(replace(found, available_to_promise=promise) if promise else found)
        if bundles:
            wanted = sorted({c.sku for cs in bundles.values() for c in cs})
            levels = dict(zip(wanted, await self._read_stock(wanted), strict=True))
            for i, cs in bundles.items():
                out[i] = self._bundle_availability(skus[i], cs, levels)
        return [a for a in out if a is not None]

    async def availability(self, sku: str) -> Availability:
        v.ident(sku, "sku")
        (one,) = await self._sellable([sku])
        return one

    async def availability_many(self, skus: Sequence[str]) -> list[Availability]:
        if not 1 <= len(skus) <= v.MAX_BATCH_SKUS:
            raise ValidationError(f"ask for 1 to {v.MAX_BATCH_SKUS} SKUs", field="sku")
        for sku in skus:
            v.ident(sku, "sku")
        return await self._sellable(list(skus))

    async def stock(self, sku: str) -> StockView:
        v.ident(sku, "sku")
        (levels,) = await self._read_stock([sku])
        return StockView(sku=sku, locations=levels)

    async def _definitions(self, skus: Sequence[str]) -> dict[str, list[Component]]:
        """The bundles among `skus` and their components (one round trip per slot)."""
        cmds: list[Command] = [(None, ("HGET", self.keys.bundle(s), "c")) for s in skus]
        found: dict[str, list[Component]] = {}
        for sku, raw in zip(skus, await self.batcher.many(cmds), strict=True):
            if isinstance(raw, BaseException):
                raise raw
            components = _components(raw)
            if components:
                found[sku] = components
        return found

    async def _limited(self, sku: str) -> bool:
        return bool(int(await self.batcher.command("HGET", self.keys.limit(sku), "n") or 0))
