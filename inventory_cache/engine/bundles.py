"""Bundles: definitions (`bundle_set-4.lua`), and an order's bundle lines expanded into
their components before locking."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.core import _components
from inventory_cache.engine.reads import Reads
from inventory_cache.errors import NotFound, NotReady, ValidationError
from inventory_cache.models import Bundle, Component, LineRequest
from inventory_cache.script_calls import Call

# A bundle line of an order: (bundle sku, qty, location, components with per-bundle qty).
BundleUse = tuple[str, int, str | None, list[Component]]


class Bundles(Reads):
    """Bundle definitions, and the expansion of an order's bundle lines."""

    def _bundle_set(self, sku: str, components: bytes | str) -> Call:
        g = self.keys.group_of(sku)
        return sc.bundle_set(
            ready=self.keys.ready(g),
            bundle=self.keys.bundle(sku),
            events=self.keys.events(g),
            stock=self.keys.stock(sku),
            sku=sku,
            components=components,
            now=self.now(),
        )

    async def put_bundle(self, sku: str, components: Sequence[Component]) -> Bundle:
        """Define or change a bundle (`bundle_set-4.lua`).

        Open reservations keep the components they locked: an order holds stock, not a
        definition, so a change or a delete applies to orders placed after it.

        That no component is a bundle is checked here, before the write, and a component
        is always locked as the plain SKU: a SKU made a bundle later, while it is a
        component of another, is sold within that other as its own stock (one level of
        expansion, never recursion). Likewise a SKU with a per-customer limit is not made
        a bundle (see `set_limit`).

        Raises:
            ValidationError: 0 or over 20 components, a duplicate, a bad qty, the bundle
                among its own components, a component that is a bundle, or a bundle SKU
                that has a per-customer limit.
        """
        v.ident(sku, "sku")
        if not 1 <= len(components) <= v.MAX_COMPONENTS:
            raise ValidationError(
                f"a bundle has 1 to {v.MAX_COMPONENTS} components", field="components"
            )
        seen: set[str] = set()
        for c in components:
            v.ident(c.sku, "components.sku"), v.qty(c.qty, "components.qty")
            if c.sku == sku:
                raise ValidationError(
                    "a bundle cannot be a component of itself", field="components"
                )
            if c.sku in seen:
                raise ValidationError(f"component {c.sku} is listed twice", field="components")
            seen.add(c.sku)
        if await self._limited(sku):
            raise ValidationError(
                f"{sku} has a per-customer limit: a bundle sells as its components, so the "
                "limit would never be checked; remove it (DELETE /v1/limits/{sku}) or limit "
                "the components",
                field="sku",
            )
        nested = sorted(await self._definitions(sorted(seen)))
        if nested:
            raise ValidationError(
                "a component cannot itself be a bundle: " + ", ".join(nested),
                field="components",
            )
        canon = sorted((c.sku, c.qty) for c in components)
        reply = await self.run(self._bundle_set(sku, orjson.dumps(canon)))
        return Bundle(sku, [Component(s, q) for s, q in canon], int(reply["version"]))

    async def get_bundle(self, sku: str) -> Bundle:
        v.ident(sku, "sku")
        key = self.keys.bundle(sku)
        ready, raw = await self.batcher.many(
            [
                (None, ("EXISTS", self.keys.ready(self.keys.group_of(sku)))),
                (None, ("HMGET", key, "c", "v")),
            ]
        )
        for r in (ready, raw):
            if isinstance(r, BaseException):
                raise r
        if not ready:
            raise NotReady("stock cache not loaded: run warmup")
        components = _components(raw[0])
        if components is None:
            raise NotFound(f"no bundle {sku}")
        return Bundle(sku, components, int(raw[1]))

    async def delete_bundle(self, sku: str) -> None:
        """Remove a bundle; open reservations keep what they locked (see `put_bundle`)."""
        v.ident(sku, "sku")
        try:
            await self.run(self._bundle_set(sku, ""))
        except NotFound:
            raise NotFound(f"no bundle {sku}") from None

    @staticmethod
    def _expand(
        merged: Sequence[LineRequest], defs: Mapping[str, list[Component]]
    ) -> tuple[list[LineRequest], list[BundleUse]]:
        """Bundle lines (those whose SKU `defs` defines) become lines of their components
        (qty times component qty, at the bundle line's location), summed with the order's
        other lines of the same (sku, location); the bundle lines come back apart,
        per-bundle qty in components."""
        if not defs:
            return list(merged), []
        total: dict[tuple[str, str | None], int] = defaultdict(int)
        uses: list[BundleUse] = []
        for ln in merged:
            components = defs.get(ln.sku)
            if components is None:
                total[(ln.sku, ln.location)] += ln.qty
                continue
            uses.append((ln.sku, ln.qty, ln.location, components))
            for c in components:
                total[(c.sku, ln.location)] += ln.qty * c.qty
        lines = [LineRequest(sku, q, loc) for (sku, loc), q in total.items()]
        for expanded in lines:
            v.qty(expanded.qty, f"qty of {expanded.sku} with its bundles")
        return lines, uses

    def _bundle_lines_by_group(self, uses: Sequence[BundleUse]) -> dict[int, list[Any]]:
        """Each part's `bdl`: the bundle lines with the components in that part's group."""
        out: dict[int, list[Any]] = defaultdict(list)
        for sku, qty, loc, components in sorted(uses, key=lambda u: (u[0], u[2] or "")):
            here: dict[int, list[list[Any]]] = defaultdict(list)
            for c in components:
                here[self.keys.group_of(c.sku)].append([c.sku, c.qty])
            for g, comps in here.items():
                out[g].append([sku, qty, loc or "", sorted(comps)])
        return out
