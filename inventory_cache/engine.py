"""The stock engine: every state change is one Lua script call per slot group.

The reserve path in one look: where the order's keys can meet in one script (always on a
single Redis; on a cluster when the order id and every line share a slot group),
`reserve()` is one call of `reserve_order-2.lua`: index, every group's part and event, all
or nothing. Otherwise it opens the order's index (`index_open-2.lua`), sends
`reserve-4.lua` for every slot group of the lines in one pipeline, and, if any group
refused, releases what this attempt locked (`settle-4.lua`, transition `release`) and
drops the index, so the caller sees all lines locked or none. Reads (`availability`,
`stock`) are plain commands with the group's readiness marker in the same round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.batcher import Batcher
from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    InventoryError,
    LimitExceeded,
    NotFound,
    NotReady,
    ValidationError,
)
from inventory_cache.incoming import BOOK_STATES, IncomingStock, available_to_promise
from inventory_cache.keys import Keys
from inventory_cache.models import (
    Availability,
    Bundle,
    Component,
    CustomerLimit,
    Level,
    LineRequest,
    Reservation,
    ReservedBundle,
    ReservedLine,
    StockView,
    Transfer,
)
from inventory_cache.script_calls import Call, MovementKind, TransferStep, Transition
from inventory_cache.script_exec import AsyncScripts
from inventory_cache.scripts import Command, Script, scripts_for
from inventory_cache.settings import Settings

if TYPE_CHECKING:
    from inventory_cache.archive import OrderArchive

Clock = Callable[[], int]
# A bundle line of an order: (bundle sku, qty, location, components with per-bundle qty).
BundleUse = tuple[str, int, str | None, list[Component]]

_ACTION_OF_STATUS: dict[str, sc.Decision] = {
    "cancelled": "cancel",
    "shipped": "ship",
    "expired": "expire",
}
# Parts per `expire_parts-3.lua` call: long enough to pay for the call, short enough not to
# hold Redis for more than about a millisecond.
_EXPIRE_CHUNK = 64
# The statuses in which a transfer step replays (`STEPS[step].after` in transferStep.lua).
_STEPS_DONE = {
    "ship": ("in_transit", "received"),
    "receive": ("received",),
    "cancel": ("cancelled",),
}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def fingerprint(body: Any) -> str:
    return hashlib.sha1(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def owner_tag(owner: str) -> str:
    """An owner (API key id) as kept in an order's fingerprint: the id itself when short
    (generated ids are 20 characters), else a digest, so `<tag>/<sha1>` fits the ledger's
    64-character `fingerprint` column."""
    return owner if len(owner) <= 23 else hashlib.sha256(owner.encode()).hexdigest()[:23]


def owned_by(order_fp: str, owner: str | None) -> bool:
    """Whether an order whose whole fingerprint is `order_fp` may be seen by a caller
    restricted to `owner` (None: any caller).

    The owner rides in the fingerprint (`<owner tag>/<sha1>`) rather than in a field of
    its own because the fingerprint already travels everywhere an order does: the index,
    each part (`ofp`), the stream, the ledger (`reservations.fingerprint`) and back through
    warmup. A retry by another key then differs in fingerprint: 409 idempotency_mismatch.
    """
    tag, sep, _ = order_fp.rpartition("/")
    # An order without an owner (made by the engine directly, or before owners were
    # recorded) is anyone's.
    return owner is None or not sep or tag == owner_tag(owner)


def parse_stock(sku: str, raw: dict[bytes, bytes]) -> dict[str, Level]:
    """Turn a stock hash (`o:<loc>`, `l:<loc>`, `s:<loc>`, `v`) into levels by location."""
    fields: dict[str, list[int]] = {}
    for k, val in raw.items():
        key = k.decode()
        if key[1:2] != ":":
            continue
        slot = "ols".find(key[0])
        if slot < 0:
            continue
        fields.setdefault(key[2:], [0, 0, 0])[slot] = int(val)
    return {
        loc: Level(sku, loc, o, lk, s, max(0, o - lk - s))
        for loc, (o, lk, s) in sorted(fields.items())
    }


def _level(reply: dict[str, Any]) -> Level:
    return Level(
        sku=reply["sku"],
        location=reply["location"],
        on_hand=int(reply["on_hand"]),
        locked=int(reply["locked"]),
        safety_stock=int(reply["safety_stock"]),
        available=int(reply["available"]),
        replayed=bool(reply.get("replayed", False)),
    )


def _transfer(reply: dict[str, Any]) -> Transfer:
    return Transfer(
        transfer_id=reply["transfer_id"],
        status=reply["status"],
        sku=reply["sku"],
        from_location=reply["from_location"],
        to_location=reply["to_location"],
        qty=int(reply["qty"]),
        replayed=bool(reply.get("replayed", False)),
    )


def _components(raw: bytes | str | None) -> list[Component] | None:
    """A bundle definition as Redis keeps it (`c`); None when the SKU is no bundle."""
    if not raw:
        return None
    return [Component(sku, int(qty)) for sku, qty in orjson.loads(raw)]


def _bdl(raw: Any) -> list[Any]:
    """A part's bundle lines (`bdl`): JSON text from Redis, or the list the engine sent."""
    if isinstance(raw, bytes | str):
        raw = orjson.loads(raw) if raw else []
    return raw if isinstance(raw, list) else []  # cjson encodes an empty array as {}


def reserved_bundles(parts: Iterable[dict[str, Any] | None]) -> list[ReservedBundle]:
    """The bundle lines of an order, put together from its parts (each part names the
    components that fall in its group)."""
    merged: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
    for p in parts:
        if p is None:
            continue
        for sku, qty, loc, comps in _bdl(p.get("bdl")):
            _, units = merged.setdefault((sku, loc), (int(qty), {}))
            for comp, each in comps:
                units[comp] = int(qty) * int(each)
    return [
        ReservedBundle(sku, qty, loc or None, [Component(c, u) for c, u in sorted(units.items())])
        for (sku, loc), (qty, units) in sorted(merged.items())
    ]


def _lines(raw: Any) -> list[ReservedLine]:
    # cjson encodes an empty array as {}.
    if not isinstance(raw, list):
        return []
    return [ReservedLine(sku=s, qty=int(q), location=loc) for s, loc, q in raw]


def _pre_lines(
    raw: Any, states: Mapping[tuple[str, int], str] | None, missing: str = "uncovered"
) -> list[ReservedLine]:
    """A part's pre-order lines (`pre`: `[[sku, location, qty, seq, expected_at], ...]`);
    `states` maps (sku, seq) to the line's state in its SKU's book while the order is
    active (None once it is not: the book forgets a settled order's lines); a line not
    there is `missing`."""
    if not isinstance(raw, list):
        return []
    return [
        ReservedLine(
            sku=s,
            qty=int(q),
            location=loc,
            preorder=True,
            expected_at=int(exp),
            preorder_status=None if states is None else states.get((s, int(seq)), missing),
        )
        for s, loc, q, seq, exp in raw
    ]


class StockEngine:
    """Async façade over the Lua scripts; one instance per process and event loop."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        clock: Clock = wall_clock_ms,
        scripts: dict[str, Script] | None = None,
        redis_clock: bool | None = None,
        one_script: bool = True,
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix, settings.slot_groups)
        self.scripts = scripts or scripts_for(client)
        self.batcher = Batcher(client, settings.max_inflight_pipelines, settings.pipeline_flush_at)
        self.executor = AsyncScripts(self.batcher, self.scripts)
        self._cluster = _is_cluster(client)
        # False sends every reservation down the multi-script path (the one an order
        # spanning groups on a cluster takes), so its crash recovery is testable anywhere.
        self._one_script = one_script
        self.now = clock
        # The expiry sweep reads Redis's clock (`sweep_now`) unless a test injected a clock
        # for everything; `redis_clock=True` keeps Redis's clock with an injected one.
        self._redis_clock = clock is wall_clock_ms if redis_clock is None else redis_clock
        self._retention_ms = settings.idempotency_retention_seconds * 1000  # movements
        self._finished_ms = settings.finished_retention_seconds * 1000  # orders, transfers
        # Finished orders past that window, from PostgreSQL (`archive.py`); the API sets it.
        self.archive: OrderArchive | None = None
        self._priority = " ".join(settings.location_priority)
        self._token_prefix = secrets.token_hex(6)
        self._attempts = itertools.count()
        self.incoming = IncomingStock(self)

    def _attempt_token(self) -> str:
        """Unique per attempt: a random prefix per engine, then a counter (cheaper than
        drawing from the OS for every reservation)."""
        return f"{self._token_prefix}{next(self._attempts):x}"

    # ------------------------------------------------------------------ plumbing
    async def run(self, call: Call) -> Any:
        """Run one script call (`script_calls`); its `err` reply raised as the typed error."""
        return await self.executor.run(call)

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several script calls in one pipeline; each reply, or the exception it
        stands for."""
        return await self.executor.run_many(calls)

    # ------------------------------------------------------------------ readiness
    async def mark_ready(self, groups: Iterable[int] | None = None) -> None:
        now = self.now()
        calls = [
            sc.mark_ready(ready=self.keys.ready(g), at=now)
            for g in groups or self.keys.all_groups()
        ]
        for r in await self.run_many(calls):
            if isinstance(r, BaseException):
                raise r

    async def check_ready(self) -> bool:
        """Runs a real script on every group: a lost script cache or a flushed Redis shows."""
        calls = [sc.check_ready(ready=self.keys.ready(g)) for g in self.keys.all_groups()]
        results = await self.run_many(calls)
        for r in results:
            if isinstance(r, NotReady):
                return False
            if isinstance(r, BaseException):
                raise r
        return True

    # ------------------------------------------------------------------ rate limit
    async def rate_limit(self, api_key_id: str, *, interval_ms: float, tolerance_ms: float) -> int:
        """Count one request of an API key against its limit (`rate_limit-1.lua`, GCRA).

        Args:
            api_key_id: the key's public id (`Principal.key_id`).
            interval_ms: emission interval, 1000 / requests per second.
            tolerance_ms: burst tolerance, (burst - 1) * interval_ms.
        Returns:
            0 when the request is allowed (and counted), else the milliseconds until it
            would be (nothing is counted).
        """
        reply = await self.run(
            sc.rate_limit(
                limiter=self.keys.rate_limit(api_key_id),
                now=self.now(),
                interval_ms=repr(interval_ms),
                tolerance_ms=repr(tolerance_ms),
            )
        )
        return 0 if reply["allowed"] else int(reply["retry_after_ms"])

    # ------------------------------------------------------------------ reads
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

    # ------------------------------------------------------------------ movements
    async def _move(
        self,
        kind: MovementKind,
        op_kind: str,
        *,
        ref: str,
        sku: str,
        location: str,
        reason: str,
        delta: int = 0,
        set_on_hand: int | None = None,
        expected_on_hand: int | None = None,
        body: dict[str, Any],
    ) -> Level:
        """One `movement-4.lua` call; `op_kind` names its idempotency record (`pos` for
        the three till events, which share one `event_id` space)."""
        g = self.keys.group_of(sku)
        call = sc.movement(
            ready=self.keys.ready(g),
            stock=self.keys.stock(sku),
            op=self.keys.op(op_kind, sku, ref),
            events=self.keys.events(g),
            op_id=f"{op_kind}:{ref}",
            ref=ref,
            reason=reason,
            sku=sku,
            location=location,
            delta=delta,
            set_on_hand="" if set_on_hand is None else set_on_hand,
            expected_on_hand="" if expected_on_hand is None else expected_on_hand,
            fingerprint=fingerprint(body),
            now=self.now(),
            retention_ms=self._retention_ms,
            op_suffix=self.keys.op_suffix(op_kind, sku, ref),
            kind=kind,
        )
        return _level(await self.run(call))

    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> Level:
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.qty(qty)
        body = {"ref": ref, "sku": sku, "location": location, "qty": qty}
        return await self._move(
            "inbound",
            "inbound",
            ref=ref,
            sku=sku,
            location=location,
            reason="inbound",
            delta=qty,
            body=body,
        )

    async def adjust(
        self,
        *,
        ref: str,
        sku: str,
        location: str,
        reason: str,
        delta: int | None = None,
        set_on_hand: int | None = None,
        expected_on_hand: int | None = None,
    ) -> Level:
        """A correction of on_hand; `expected_on_hand` makes a count a compare-and-set."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.reason(reason)
        if (delta is None) == (set_on_hand is None):
            raise ValidationError("give exactly one of delta and set_on_hand", field="delta")
        if delta is not None:
            v.delta(delta)
        if set_on_hand is not None:
            v.on_hand(set_on_hand)
        if expected_on_hand is not None:
            v.on_hand(expected_on_hand, "expected_on_hand")
        body = {
            "ref": ref,
            "sku": sku,
            "location": location,
            "reason": reason,
            "delta": delta,
            "set_on_hand": set_on_hand,
            "expected_on_hand": expected_on_hand,
        }
        return await self._move(
            "adjust",
            "adjust",
            ref=ref,
            sku=sku,
            location=location,
            reason=reason,
            delta=delta or 0,
            set_on_hand=set_on_hand,
            expected_on_hand=expected_on_hand,
            body=body,
        )

    async def record_return(
        self, *, ref: str, sku: str, location: str, qty: int, restock: bool
    ) -> Level:
        """A customer return; without restock it is only recorded (delta 0 in the ledger)."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.qty(qty)
        if not isinstance(restock, bool):
            raise ValidationError("restock must be true or false", field="restock")
        body = {"ref": ref, "sku": sku, "location": location, "qty": qty, "restock": restock}
        return await self._move(
            "return",
            "return",
            ref=ref,
            sku=sku,
            location=location,
            reason="restock" if restock else "no_restock",
            delta=qty if restock else 0,
            body=body,
        )

    async def pos_event(
        self, *, event_id: str, type: str, sku: str, location: str, qty: int
    ) -> Level:
        """A till or scanner event; a sale is never refused (the goods already left)."""
        v.ident(event_id, "event_id"), v.ident(sku, "sku"), v.ident(location, "location")
        body = {"event_id": event_id, "type": type, "sku": sku, "location": location, "qty": qty}
        if type == "sale":
            v.qty(qty)
            return await self._move(
                "pos_sale",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="sale",
                delta=-qty,
                body=body,
            )
        if type == "return":
            v.qty(qty)
            return await self._move(
                "pos_return",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="return",
                delta=qty,
                body=body,
            )
        if type == "count":
            v.on_hand(qty, "qty")
            return await self._move(
                "pos_count",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="count",
                set_on_hand=qty,
                body=body,
            )
        raise ValidationError("type must be sale, return or count", field="type")

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

    # ------------------------------------------------------------------ bundles
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

    # ------------------------------------------------------------------ per-customer limits
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

    async def _limited(self, sku: str) -> bool:
        return bool(int(await self.batcher.command("HGET", self.keys.limit(sku), "n") or 0))

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

    # ------------------------------------------------------------------ reservations
    @staticmethod
    def merge_lines(lines: Sequence[LineRequest]) -> list[LineRequest]:
        """Sum duplicate lines of one (sku, location) so the check sees the whole demand."""
        if not 1 <= len(lines) <= v.MAX_LINES:
            raise ValidationError(f"a reservation has 1 to {v.MAX_LINES} lines", field="lines")
        total: dict[tuple[str, str | None], int] = defaultdict(int)
        for ln in lines:
            v.ident(ln.sku, "sku"), v.qty(ln.qty)
            if ln.location is not None:
                v.ident(ln.location, "location")
            total[(ln.sku, ln.location)] += ln.qty
        merged = [LineRequest(sku, q, loc) for (sku, loc), q in total.items()]
        for ln in merged:
            v.qty(ln.qty)
        return merged

    def _settle_call(
        self,
        transition: Transition,
        g: int,
        order_id: str,
        skus: Sequence[str],
        now: int,
        token: str,
        customer: str | None = None,
    ) -> Call:
        """`settle-4.lua`'s call for the order's part in group g; with the order's
        customer, that customer's count of every SKU too, so units counted against a
        per-customer limit can go back."""
        sku_keys = [self.keys.stock(s) for s in skus]
        sku_keys += [self.keys.preorders(s) for s in skus]
        if customer:
            sku_keys += [self.keys.customer_count(s, customer) for s in skus]
        return sc.settle(
            ready=self.keys.ready(g),
            part=self.keys.part(g, order_id),
            expiry=self.keys.expiry(g),
            events=self.keys.events(g),
            sku_keys=sku_keys,
            order_id=order_id,
            now=now,
            retention_ms=self._finished_ms,
            skus=orjson.dumps(skus),
            token=token,
            transition=transition,
        )

    def _reserve_line_keys(self, skus: Sequence[str], customer: str | None) -> list[str]:
        """A part's line keys as the reserve scripts read them: each line's stock, then
        its SKU's limit, then its pre-order book, then (with a customer) that customer's
        count, all in line order and in the SKU's group, so the limit is checked and
        counted where the lock is."""
        keys = [self.keys.stock(s) for s in skus]
        keys += [self.keys.limit(s) for s in skus]
        keys += [self.keys.preorders(s) for s in skus]
        if customer:
            keys += [self.keys.customer_count(s, customer) for s in skus]
        return keys

    def _order_index(
        self,
        order_id: str,
        token: str,
        now: int,
        exp: int,
        whole_fp: str,
        body: dict[str, Any],
        stale_token: str = "",
    ) -> Call:
        """`index_open-2.lua`'s call for this attempt; `stale_token` takes over from it."""
        h = self.keys.group_of(order_id)
        return sc.index_open(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            fingerprint=whole_fp,
            token=token,
            now=now,
            expires_at=exp,
            body=orjson.dumps(body),
            retention_ms=self._finished_ms,
            stale_token=stale_token,
        )

    def _index_drop(self, order_id: str, token: str) -> Call:
        h = self.keys.group_of(order_id)
        return sc.index_drop(
            ready=self.keys.ready(h), index=self.keys.order_index(order_id), token=token
        )

    async def reserve(
        self,
        *,
        order_id: str,
        lines: Sequence[LineRequest],
        ttl_seconds: int | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
    ) -> Reservation:
        """Lock every line or none. `owner` (an API key id) makes the order that key's
        (`owned_by`); without one, any caller may act on it. `customer_id` counts the
        order against the per-customer limits of its SKUs (required when one has a limit)."""
        v.ident(order_id, "order_id")
        if customer_id is not None:
            v.ident(customer_id, "customer_id")
        merged = self.merge_lines(lines)
        ttl = v.ttl(
            self.settings.reservation_ttl_seconds if ttl_seconds is None else ttl_seconds,
            30 * 86400,
        )
        # The order as asked (bundle lines unexpanded): a retry with the same body replays
        # even if a bundle's definition changed meanwhile.
        canon = sorted((ln.sku, ln.location or "", ln.qty) for ln in merged)
        who: dict[str, str] = {} if customer_id is None else {"customer_id": customer_id}
        now = self.now()
        token = self._attempt_token()
        h = self.keys.group_of(order_id)
        # Without a customer the fingerprint is the one orders always had.
        whole_fp = fingerprint({"order_id": order_id, "lines": canon, "ttl": ttl, **who})
        if owner is not None:
            whole_fp = f"{owner_tag(owner)}/{whole_fp}"
        exp = now + ttl * 1000
        # Bundle definitions, None until known. On the one-script path the script finds
        # them in the stock hashes it reads anyway (`bdef`) and answers them instead of
        # locking, so an order without bundles pays no round trip for them; on the other
        # path they are read before the order index opens.
        defs: dict[str, list[Component]] | None = None
        archive_asked = False
        while True:
            by_group, body, bundle_lines, parts = self._order_plan(
                order_id, merged, defs or {}, ttl, customer_id
            )
            one_script = self._one_script and (
                not self._cluster or (len(by_group) == 1 and h in by_group)
            )
            if not one_script:
                if defs is None:
                    defs = await self._definitions(sorted({ln.sku for ln in merged}))
                    continue
                break
            if self.archive is not None and not archive_asked:
                # Asked first: the one call below would lock at once. A finished order
                # the archive holds answers the same from here as from Redis.
                archive_asked = True
                archived = await self.archive.order(order_id)
                if archived is not None:
                    if archived.fingerprint != whole_fp:
                        raise IdempotencyMismatch()
                    return archived.reservation
            opened = await self._reserve_at_once(
                order_id, token, now, exp, whole_fp, body, parts, customer_id, defs is None
            )
            if "bundles" in opened:
                defs = {sku: _components(raw) or [] for sku, raw in opened["bundles"].items()}
                continue
            if not opened.get("dup"):
                held = {
                    g: {**part, "bdl": bundle_lines.get(g, [])}
                    for g, part in zip(sorted(by_group), opened["parts"], strict=True)
                }
                return self._from_parts(order_id, "active", exp, held)
            if defs is None:  # a takeover below reserves the parts: expanded
                defs = await self._definitions(sorted({ln.sku for ln in merged}))
                by_group, body, bundle_lines, parts = self._order_plan(
                    order_id, merged, defs, ttl, customer_id
                )
            break
        if not one_script:
            opened = await self.run(self._order_index(order_id, token, now, exp, whole_fp, body))
            if opened.get("new") and self.archive is not None:
                archived = await self.archive.order(order_id)
                if archived is not None:  # finished, and its keys left Redis after the window
                    await self.run(self._index_drop(order_id, token))
                    if archived.fingerprint != whole_fp:
                        raise IdempotencyMismatch()
                    return archived.reservation
        takeover = False
        if opened.get("dup"):
            if opened["st"] != "active":
                return await self.get_reservation(order_id, replayed=True)
            found = await self._read_parts(order_id, opened["body"])
            if all(p is not None for p in found.values()):
                # Past its TTL the order is over even before the sweep releases it; say
                # so, as get_reservation does, rather than replay a stale "active".
                status = "active" if now < int(opened["exp"]) else "expired"
                states = await self._preorder_states(found) if status == "active" else None
                return self._from_parts(
                    order_id, status, int(opened["exp"]), found, replayed=True, states=states
                )
            if now - int(opened["at"]) < self.settings.attempt_lease_seconds * 1000:
                raise InvalidState("a reservation for this order is in progress: retry shortly")
            again = await self.run(
                self._order_index(order_id, token, now, exp, whole_fp, body, opened["tok"])
            )
            if not again.get("new"):
                raise InvalidState("a reservation for this order is in progress: retry shortly")
            takeover, exp = True, int(opened["exp"])
        return await self._reserve_parts(
            order_id,
            token,
            by_group,
            parts,
            now,
            exp,
            takeover,
            whole_fp,
            bundle_lines,
            customer_id,
        )

    def _order_plan(
        self,
        order_id: str,
        merged: Sequence[LineRequest],
        defs: Mapping[str, list[Component]],
        ttl: int,
        customer: str | None,
    ) -> tuple[
        dict[int, list[LineRequest]],
        dict[str, Any],
        dict[int, list[Any]],
        list[tuple[int, str, list[str], bytes, bytes]],
    ]:
        """The order's lines expanded with `defs`, by group; the index body (where the
        parts live); each group's bundle lines; each group's part (`_part_specs`)."""
        expanded, uses = self._expand(merged, defs)
        by_group: dict[int, list[LineRequest]] = defaultdict(list)
        for ln in expanded:
            by_group[self.keys.group_of(ln.sku)].append(ln)
        body: dict[str, Any] = {
            "groups": {str(g): sorted({ln.sku for ln in ls}) for g, ls in by_group.items()}
        }
        if customer is not None:
            body["cu"] = customer
        bundle_lines = self._bundle_lines_by_group(uses)
        return (
            by_group,
            body,
            bundle_lines,
            self._part_specs(order_id, by_group, ttl, bundle_lines, customer),
        )

    def _part_specs(
        self,
        order_id: str,
        by_group: dict[int, list[LineRequest]],
        ttl: int,
        bundle_lines: dict[int, list[Any]],
        customer: str | None,
    ) -> list[tuple[int, str, list[str], bytes, bytes]]:
        """Each group's part, by ascending group: (group, part fingerprint, SKUs of its
        lines, lines JSON as `planPart.lua` reads them, its bundle lines JSON or b""),
        lines in (sku, location) order. The customer is part of the fingerprint: the
        same lines for another customer count against another limit."""
        who = {} if customer is None else {"customer_id": customer}
        specs: list[tuple[int, str, list[str], bytes, bytes]] = []
        for g in sorted(by_group):
            ls = sorted(by_group[g], key=lambda ln: (ln.sku, ln.location or ""))
            part: dict[str, Any] = {
                "order_id": order_id,
                "ttl": ttl,
                "lines": [(ln.sku, ln.location or "", ln.qty) for ln in ls],
                **who,
            }
            bdl = bundle_lines.get(g)
            if bdl:
                part["bundles"] = bdl
            spec = orjson.dumps([[ln.sku, ln.location or "", ln.qty] for ln in ls])
            specs.append(
                (
                    g,
                    fingerprint(part),
                    [ln.sku for ln in ls],
                    spec,
                    orjson.dumps(bdl) if bdl else b"",
                )
            )
        return specs

    async def _reserve_at_once(
        self,
        order_id: str,
        token: str,
        now: int,
        exp: int,
        whole_fp: str,
        body: dict[str, Any],
        parts: Sequence[tuple[int, str, list[str], bytes, bytes]],
        customer: str | None,
        find_bundles: bool,
    ) -> dict[str, Any]:
        """The whole reservation in one `reserve_order-2.lua` call: the index written
        committed with every part (limits checked and counted with the locks), or nothing
        written. Its reply, or the index it found (`dup`), which `reserve` answers as
        after `index_open-2.lua`; with `find_bundles` (lines as the client sent them), or
        the definitions of the bundles among them (`bundles`), nothing written."""
        h = self.keys.group_of(order_id)
        part_keys: list[str] = []
        part_args: list[Any] = []
        for g, part_fp, skus, spec, bdl in parts:
            part_keys += [
                self.keys.ready(g),
                self.keys.part(g, order_id),
                self.keys.expiry(g),
                self.keys.events(g),
            ]
            part_keys += self._reserve_line_keys(skus, customer)
            part_args += [part_fp, len(skus), spec, bdl]
        call = sc.reserve_order(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            part_keys=part_keys,
            order_id=order_id,
            token=token,
            now=now,
            expires_at=exp,
            order_fingerprint=whole_fp,
            body=orjson.dumps(body),
            retention_ms=self._finished_ms,
            customer_id=customer or "",
            find_bundles=find_bundles,
            parts=part_args,
            priority=self._priority,
        )
        reply: dict[str, Any] = await self.run(call)
        return reply

    async def _reserve_parts(
        self,
        order_id: str,
        token: str,
        by_group: dict[int, list[LineRequest]],
        parts: Sequence[tuple[int, str, list[str], bytes, bytes]],
        now: int,
        exp: int,
        takeover: bool,
        whole_fp: str,
        bundle_lines: dict[int, list[Any]],
        customer: str | None,
    ) -> Reservation:
        groups = [g for g, _, _, _, _ in parts]
        calls = [
            sc.reserve(
                ready=self.keys.ready(g),
                part=self.keys.part(g, order_id),
                expiry=self.keys.expiry(g),
                events=self.keys.events(g),
                line_keys=self._reserve_line_keys(skus, customer),
                order_id=order_id,
                token=token,
                part_fingerprint=part_fp,
                now=now,
                expires_at=exp,
                priority=self._priority,
                lines=spec,
                order_fingerprint=whole_fp,
                bundle_lines=bdl,
                customer_id=customer or "",
            )
            for g, part_fp, skus, spec, bdl in parts
        ]
        results = await self.run_many(calls)
        short: list[dict[str, Any]] = []
        over: list[dict[str, Any]] = []
        failure: BaseException | None = None
        held: dict[int, dict[str, Any]] = {}
        for g, r in zip(groups, results, strict=True):
            if isinstance(r, InsufficientStock):
                short.extend(r.lines)
            elif isinstance(r, LimitExceeded):
                over.extend(r.lines)
            elif isinstance(r, BaseException):
                failure = failure or r
            else:
                held[g] = {**r, "bdl": bundle_lines.get(g, [])}
        if not short and not over and failure is None:
            return await self._commit(order_id, token, exp, held, by_group, takeover, customer)
        await self._compensate(order_id, token, held, by_group, takeover, customer)
        if failure is not None:
            raise failure
        if over:  # the customer cannot take these whatever the stock
            raise LimitExceeded(over)
        raise InsufficientStock(short)

    async def _commit(
        self,
        order_id: str,
        token: str,
        exp: int,
        held: dict[int, dict[str, Any]],
        by_group: dict[int, list[LineRequest]],
        takeover: bool,
        customer: str | None,
    ) -> Reservation:
        """Every part is in place: mark the attempt finished on the index, so ship, cancel
        and expiry may decide the order from now on (until then they answer "in progress").

        A ship or cancel that saw every part in place may have decided first; that came
        after this reservation in effect, so the answer stays `active`. An attempt presumed
        dead and compensated or taken over meanwhile undoes what it still holds.
        """
        h = self.keys.group_of(order_id)
        commit = sc.index_commit(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            token=token,
            preorders=any(p.get("pre") for p in held.values()),
        )
        try:
            done = await self.run(commit)
        except (NotFound, InvalidState):
            await self._compensate(order_id, token, held, by_group, takeover, customer)
            raise InvalidState(
                "this reservation attempt outlived its lease and was superseded: retry",
                reservation_status="pending",
            ) from None
        if done["status"] == "expired":
            # Only a sweep that presumed this attempt dead decides while parts are missing:
            # roll the decision forward onto the parts this attempt placed since.
            body: dict[str, Any] = {
                "groups": {str(g): sorted({ln.sku for ln in ls}) for g, ls in by_group.items()}
            }
            if customer is not None:
                body["cu"] = customer
            await self._apply(order_id, {"status": "expired", "exp": exp, "body": body})
            raise InvalidState(
                f"reservation {order_id} expired", status="expired", reservation_status="expired"
            )
        return self._from_parts(order_id, "active", exp, held)

    async def _compensate(
        self,
        order_id: str,
        token: str,
        held: dict[int, dict[str, Any]],
        by_group: dict[int, list[LineRequest]],
        takeover: bool,
        customer: str | None,
    ) -> None:
        """Undo what this attempt locked (and counted), then drop the index it opened."""
        now = self.now()
        calls = [
            self._settle_call(
                "release",
                g,
                order_id,
                sorted({ln.sku for ln in by_group[g]}),
                now,
                "" if takeover else token,
                customer,
            )
            for g, r in held.items()
            if takeover or not r.get("replayed")
        ]
        for r in await self.run_many(calls):
            if isinstance(r, BaseException) and not isinstance(r, NotFound):
                raise r
        await self.run(self._index_drop(order_id, token))

    async def _read_parts(
        self, order_id: str, body: dict[str, Any]
    ) -> dict[int, dict[str, Any] | None]:
        groups = [int(g) for g in body["groups"]]
        cmds: list[Command] = [(None, ("HGETALL", self.keys.part(g, order_id))) for g in groups]
        raws = await self.batcher.many(cmds)
        out: dict[int, dict[str, Any] | None] = {}
        for g, raw in zip(groups, raws, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            out[g] = (
                {
                    "status": raw[b"st"].decode(),
                    "lines": orjson.loads(raw[b"lines"]),
                    "tok": raw.get(b"tok", b"").decode(),
                    "bdl": raw.get(b"bdl", b""),
                    "pre": orjson.loads(raw[b"pre"]) if b"pre" in raw else None,
                }
                if raw
                else None
            )
        return out

    async def _preorder_states(
        self, parts: Mapping[int, dict[str, Any] | None]
    ) -> dict[tuple[str, int], str]:
        """The book state of every pre-order line of an active order's parts."""
        wanted = [
            (sku, int(seq))
            for p in parts.values()
            if p is not None and isinstance(p.get("pre"), list)
            for sku, _, _, seq, _ in p["pre"]
        ]
        if not wanted:
            return {}
        raws = await self.batcher.many(
            [(None, ("HGET", self.keys.preorders(sku), seq)) for sku, seq in wanted]
        )
        states: dict[tuple[str, int], str] = {}
        for key, raw in zip(wanted, raws, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            if raw is not None:
                states[key] = BOOK_STATES[orjson.loads(raw)[5]]
        return states

    @staticmethod
    def _from_parts(
        order_id: str,
        status: str,
        exp: int,
        parts: Mapping[int, dict[str, Any] | None],
        replayed: bool = False,
        states: Mapping[tuple[str, int], str] | None = None,
    ) -> Reservation:
        """The order from its parts: every part's locked lines, then its pre-order lines
        (their states from `states` while active; a line not found there has just been
        taken when the order is new, so `awaiting`)."""
        lines: list[ReservedLine] = []
        pre: list[ReservedLine] = []
        for g in sorted(parts):
            p = parts[g]
            if p is not None:
                lines.extend(_lines(p["lines"]))
                if p.get("pre"):
                    known = (states or {}) if status == "active" else None
                    missing = "uncovered" if states is not None else "awaiting"
                    pre.extend(_pre_lines(p["pre"], known, missing))
        lines.extend(pre)
        bundles = reserved_bundles(parts.values())
        return Reservation(order_id, status, exp, lines, replayed, bundles)  # type: ignore[arg-type]

    async def get_reservation(
        self, order_id: str, *, replayed: bool = False, owner: str | None = None
    ) -> Reservation:
        """The order; NotFound also when it is not `owner`'s (None: anyone's)."""
        v.ident(order_id, "order_id")
        raw = await self.batcher.command("HGETALL", self.keys.order_index(order_id))
        if raw and not owned_by(raw[b"fp"].decode(), owner):
            raise NotFound(f"no reservation {order_id}")
        parts = await self._read_parts(order_id, orjson.loads(raw[b"body"])) if raw else {}
        if all(p is None for p in parts.values()):
            archived = await self.archive.order(order_id) if self.archive else None
            if archived is None or not owned_by(archived.fingerprint, owner):
                raise NotFound(f"no reservation {order_id}")
            return replace(archived.reservation, replayed=replayed)
        status = raw[b"st"].decode()
        exp = int(raw[b"exp"])
        if status == "active" and self.now() >= exp:
            status = "expired"
        states = await self._preorder_states(parts) if status == "active" else None
        return self._from_parts(order_id, status, exp, parts, replayed, states)

    async def _decide(
        self, order_id: str, action: sc.Decision, now: int | None = None, vouch: str = ""
    ) -> dict[str, Any]:
        h = self.keys.group_of(order_id)
        at = self.now() if now is None else now

        def decide(preorders_seen: bool) -> Call:
            return sc.order_decide(
                ready=self.keys.ready(h),
                index=self.keys.order_index(order_id),
                action=action,
                now=at,
                vouch=vouch,
                preorders_seen=preorders_seen,
            )

        try:
            decided: dict[str, Any] = await self.run(decide(False))
            return decided
        except InvalidState as exc:
            if not exc.extra.get("preorders"):
                raise
            body = exc.extra["body"]
        await self._refuse_unconverted(order_id, await self._read_parts(order_id, body))
        decided = await self.run(decide(True))
        return decided

    async def _decide_finished(
        self, order_id: str, action: sc.Decision, now: int | None = None
    ) -> dict[str, Any]:
        """Decide the order only once its reservation attempt has placed every part.

        While the attempt is still placing them the index says *pending*: the parts are
        read, and the order is decided only if all of them are in place for that
        attempt (it has finished in effect; its commit is on its way). Cancel and expire
        also decide an attempt past its lease (presumed dead; releasing the parts it
        placed is always safe); a ship never ships part of an order.

        Raises:
            InvalidState: `reservation_status: pending`, the attempt is in progress.
        """
        now = self.now() if now is None else now
        try:
            return await self._decide(order_id, action, now)
        except InvalidState as exc:
            if not exc.extra.get("pending"):
                raise
            info = exc.extra
        parts = await self._read_parts(order_id, info["body"])
        placed = all(p is not None and p["tok"] == info["tok"] for p in parts.values())
        stale = now - int(info["at"]) >= self.settings.attempt_lease_seconds * 1000
        if placed or (stale and action != "ship"):
            if action == "ship":  # the index may not be marked `pre` yet
                await self._refuse_unconverted(order_id, parts)
            try:
                return await self._decide(order_id, action, now, vouch=info["tok"])
            except InvalidState as exc:
                if not exc.extra.get("pending"):
                    raise
        raise InvalidState(
            f"the reservation of {order_id} is still in progress: retry shortly",
            reservation_status="pending",
        )

    async def _apply(
        self, order_id: str, decision: dict[str, Any]
    ) -> dict[int, dict[str, Any] | None]:
        """Bring every part to the status decided on the index (idempotent, rolls forward)."""
        action = _ACTION_OF_STATUS[decision["status"]]
        now = self.now()
        if action == "expire" and "exp" in decision:
            # The index already decided "expired" on a clock past the deadline; a part
            # must not refuse it because this process's clock reads a little earlier.
            now = max(now, int(decision["exp"]))
        groups = {int(g): skus for g, skus in decision["body"]["groups"].items()}
        customer = decision["body"].get("cu")
        calls = [
            self._settle_call(action, g, order_id, skus, now, "", customer)
            for g, skus in sorted(groups.items())
        ]
        parts: dict[int, dict[str, Any] | None] = {}
        for g, r in zip(sorted(groups), await self.run_many(calls), strict=True):
            if isinstance(r, NotFound):
                parts[g] = None
            elif isinstance(r, BaseException):
                raise r
            else:
                parts[g] = r
        return parts

    async def _settle(self, order_id: str, action: sc.Decision) -> Reservation:
        v.ident(order_id, "order_id")
        try:
            decision = await self._decide_finished(order_id, action)
        except NotFound:
            return await self._settled_before(order_id, action)
        except InvalidState as exc:
            if exc.extra.get("reservation_status") is not None:  # pending, or pre-orders
                raise
            if exc.extra.get("status") in _ACTION_OF_STATUS:
                await self._apply(order_id, exc.extra)
            raise InvalidState(
                f"reservation {order_id} is {exc.extra.get('status')}",
                reservation_status=exc.extra.get("status"),
            ) from None
        parts = await self._apply(order_id, decision)
        if decision.get("lapsed"):
            raise InvalidState(f"reservation {order_id} expired", reservation_status="expired")
        if all(p is None for p in parts.values()):  # the parts left Redis before the index
            return await self._settled_before(order_id, action)
        return self._from_parts(
            order_id,
            decision["status"],
            int(decision["exp"]),
            parts,
            bool(decision.get("replayed")),
        )

    async def _settled_before(self, order_id: str, action: sc.Decision) -> Reservation:
        """Cancel or ship of an order that left Redis after the window: the answer it gave
        there, from PostgreSQL (the same action replays; another is `invalid_state`)."""
        archived = await self.archive.order(order_id) if self.archive else None
        if archived is None:
            raise NotFound(f"no reservation {order_id}")
        res = archived.reservation
        if _ACTION_OF_STATUS[res.status] == action:
            return res
        raise InvalidState(f"reservation {order_id} is {res.status}", reservation_status=res.status)

    async def cancel(self, order_id: str, *, owner: str | None = None) -> Reservation:
        """Release the locks; NotFound when the order is not `owner`'s (None: anyone's)."""
        if owner is not None:
            v.ident(order_id, "order_id")
            raw = await self.batcher.command("HGET", self.keys.order_index(order_id), "fp")
            if raw is not None:
                fp: str | None = raw.decode()
            else:  # finished and gone from Redis: its owner is in the archived fingerprint
                archived = await self.archive.order(order_id) if self.archive else None
                fp = archived.fingerprint if archived else None
            if fp is None or not owned_by(fp, owner):
                raise NotFound(f"no reservation {order_id}")
        return await self._settle(order_id, "cancel")

    async def ship(self, order_id: str) -> Reservation:
        return await self._settle(order_id, "ship")

    async def _refuse_unconverted(
        self, order_id: str, parts: Mapping[int, dict[str, Any] | None]
    ) -> None:
        """Refuse to ship an order while a pre-order line awaits its incoming stock or has
        lost it. Checked before the order index decides (a decided index is never undone);
        a converted line stays converted until its order settles, so the answer cannot
        turn between this check and the ship."""
        states = await self._preorder_states(parts)
        for p in parts.values():
            for sku, _, _, seq, _ in (p or {}).get("pre") or []:
                state = states.get((sku, int(seq)), "uncovered")
                if state != "locked":
                    raise InvalidState(
                        f"a pre-order line of {sku} is {state}: reservation {order_id} cannot "
                        "ship until its incoming stock is received",
                        reservation_status="active",
                    )

    async def sweep_now(self) -> int:
        """The expiry sweep's "now": Redis's clock, read once per sweep (see `expire_due`).

        On a cluster, the slowest primary's clock: it bounds them all, so no part is
        released early by any of them.
        """
        if not self._redis_clock:
            return self.now()
        if _is_cluster(self.client):
            reply = await self.client.execute_command("TIME", target_nodes="primaries")
            times = list(reply.values()) if isinstance(reply, dict) else [reply]
        else:
            times = [await self.client.time()]
        return min(int(sec) * 1000 + int(usec) // 1000 for sec, usec in times)

    async def expire_due(
        self, *, limit_per_group: int = 8, max_orders: int = 32, now: int | None = None
    ) -> int:
        """Release reservations past their TTL; returns how many parts this call expired.

        One pass: from every group's due entries, the `limit_per_group` oldest and the
        `limit_per_group` newest, taken round-robin across groups up to `max_orders`
        distinct orders; each order decided once on its index (so a racing ship wins or
        loses as a whole); then every decided part settled with one `expire_parts-3.lua`
        call per group. The work is linear in the parts due (an order of 100 lines in 80
        groups is decided once and each part expired once) and a pass is bounded (at most
        `max_orders` orders). Fairness: a backlog drains from its oldest end while what
        has just fallen due is taken from the newest end, so one client's burst of large
        orders does not hold back an unrelated order for more than a pass or two.

        `now` is the sweep's single reading of the clock (`sweep_now()` when not given):
        every decision and every part of a pass compare against the same instant, and
        that instant comes from Redis, not from this host, so a scheduler whose clock
        runs ahead releases nothing before its `expires_at`.

        A part whose index is gone (an attempt that crashed before its index survived) is
        expired on its own; an order whose attempt is still placing its parts waits for a
        later pass.
        """
        now = await self.sweep_now() if now is None else now
        groups = list(self.keys.all_groups())
        cmds: list[Command] = []
        for g in groups:
            key = self.keys.expiry(g)
            cmds.append((None, ("ZRANGEBYSCORE", key, "-inf", now, "LIMIT", 0, limit_per_group)))
            cmds.append((None, ("ZREVRANGEBYSCORE", key, now, "-inf", "LIMIT", 0, limit_per_group)))
        due = await self.batcher.many(cmds)
        for members in due:
            if isinstance(members, BaseException):
                raise members
        orders: dict[str, int] = {}
        for row in itertools.zip_longest(*due):
            for i, raw in enumerate(row):
                if raw is not None and len(orders) < max_orders:
                    orders.setdefault(raw.decode(), groups[i // 2])
        decisions = await asyncio.gather(
            *(self._expiry_decision(order_id, g, now) for order_id, g in orders.items())
        )
        work: dict[int, list[tuple[str, list[str], str]]] = defaultdict(list)
        others: list[Awaitable[dict[int, dict[str, Any] | None]]] = []
        for order_id, decision in zip(orders, decisions, strict=True):
            if decision is None:
                continue
            if decision["status"] != "expired":
                # Shipped or cancelled on its index, a part not yet: roll that forward.
                others.append(self._apply(order_id, decision))
                continue
            customer = decision["body"].get("cu", "")
            for g, skus in decision["body"]["groups"].items():
                work[int(g)].append((order_id, skus, customer))
        expired = await self._expire_parts(work, now)
        for r in await asyncio.gather(*others, return_exceptions=True):
            if isinstance(r, BaseException) and not isinstance(r, InventoryError):
                raise r
        return expired

    async def _expiry_decision(self, order_id: str, g: int, now: int) -> dict[str, Any] | None:
        """What to do with a due order: its index's decision, or None (leave it be)."""
        try:
            return await self._decide_finished(order_id, "expire", now)
        except InvalidState as exc:
            if exc.extra.get("status") not in _ACTION_OF_STATUS:
                return None  # still placing its parts, or not due on its index
            return exc.extra  # decided before: settle any part still behind
        except NotFound:
            raw, cu = await self.batcher.command(
                "HMGET", self.keys.part(g, order_id), "lines", "cu"
            )
            if raw is None:
                await self.batcher.command("ZREM", self.keys.expiry(g), order_id)
                return None
            skus = sorted({ln[0] for ln in orjson.loads(raw)} if raw != b"{}" else set())
            body: dict[str, Any] = {"groups": {str(g): skus}}
            if cu is not None:
                body["cu"] = cu.decode()
            return {"status": "expired", "body": body}

    async def _expire_parts(
        self, work: Mapping[int, list[tuple[str, list[str], str]]], now: int
    ) -> int:
        """Expire the given parts, one script call per group and chunk; returns how many
        were expired by this call (a part expired before is not counted again)."""
        calls: list[Call] = []
        for g, parts in sorted(work.items()):
            for start in range(0, len(parts), _EXPIRE_CHUNK):
                chunk = parts[start : start + _EXPIRE_CHUNK]
                keys: list[str] = []
                spec: list[list[Any]] = []
                for order_id, skus, customer in chunk:
                    keys.append(self.keys.part(g, order_id))
                    keys.extend(self.keys.stock(sku) for sku in skus)
                    keys.extend(self.keys.preorders(sku) for sku in skus)
                    if customer:
                        keys.extend(self.keys.customer_count(sku, customer) for sku in skus)
                        spec.append([order_id, skus, customer])
                    else:
                        spec.append([order_id, skus])
                calls.append(
                    sc.expire_parts(
                        ready=self.keys.ready(g),
                        expiry=self.keys.expiry(g),
                        events=self.keys.events(g),
                        part_keys=keys,
                        now=now,
                        retention_ms=self._retention_ms,
                        parts=orjson.dumps(spec),
                    )
                )
        expired = 0
        for reply in await self.run_many(calls):
            if isinstance(reply, BaseException):
                raise reply
            expired += sum(1 for outcome in reply if outcome == "expired")
        return expired

    # ------------------------------------------------------------------ transfers
    def _transfer_index(self, transfer_id: str) -> tuple[str, str]:
        """The readiness marker of the transfer id's group and the transfer's index."""
        h = self.keys.group_of(transfer_id)
        return self.keys.ready(h), self.keys.transfer_index(transfer_id)

    async def request_transfer(
        self, *, transfer_id: str, sku: str, from_location: str, to_location: str, qty: int
    ) -> Transfer:
        v.ident(transfer_id, "transfer_id"), v.ident(sku, "sku"), v.qty(qty)
        v.ident(from_location, "from_location"), v.ident(to_location, "to_location")
        if from_location == to_location:
            raise ValidationError("from_location and to_location must differ", field="to_location")
        fp = fingerprint(
            {
                "transfer_id": transfer_id,
                "sku": sku,
                "from": from_location,
                "to": to_location,
                "qty": qty,
            }
        )
        ready, index = self._transfer_index(transfer_id)
        token = self._attempt_token()
        now = self.now()
        # No expires_at: the index must not expire while the transfer is open (it may be in
        # transit for longer than the retention window); receive and cancel close it. An
        # attempt that dies between the two calls below leaves an index with no transfer:
        # lookups answer not_found, and a retry with the same body completes it.
        open_index = sc.index_open(
            ready=ready,
            index=index,
            fingerprint=fp,
            token=token,
            now=now,
            expires_at="",
            body=orjson.dumps({"sku": sku}),
            retention_ms=self._finished_ms,
            stale_token="",
        )
        drop_index = sc.index_drop(ready=ready, index=index, token=token)
        opened = await self.run(open_index)
        if opened.get("new") and self.archive is not None:
            archived = await self.archive.transfer(transfer_id)
            if archived is not None:  # finished, and its keys left Redis after the window
                await self.run(drop_index)
                if archived[1] != fp:
                    raise IdempotencyMismatch()
                return replace(archived[0], replayed=True)
        g = self.keys.group_of(sku)
        request = sc.transfer_request(
            ready=self.keys.ready(g),
            transfer=self.keys.transfer(sku, transfer_id),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            transfer_id=transfer_id,
            fingerprint=fp,
            sku=sku,
            from_location=from_location,
            to_location=to_location,
            qty=qty,
            now=now,
        )
        try:
            reply = await self.run(request)
        except InventoryError:
            if opened.get("new"):
                await self.run(drop_index)
            raise
        if opened.get("dup"):
            # The first attempt may have failed and dropped the index meanwhile.
            await self.run(open_index)
        return _transfer(reply)

    async def _transfer_sku(self, transfer_id: str) -> str:
        v.ident(transfer_id, "transfer_id")
        raw = await self.batcher.command("HGET", self.keys.transfer_index(transfer_id), "body")
        if raw is None:
            raise NotFound(f"no transfer {transfer_id}")
        return str(orjson.loads(raw)["sku"])

    async def _transfer_step(self, transfer_id: str, step: TransferStep) -> Transfer:
        try:
            sku = await self._transfer_sku(transfer_id)
        except NotFound:
            return await self._stepped_before(transfer_id, step)
        now = self.now()
        g = self.keys.group_of(sku)
        call = sc.transfer_step(
            ready=self.keys.ready(g),
            transfer=self.keys.transfer(sku, transfer_id),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            transfer_id=transfer_id,
            now=now,
            retention_ms=self._finished_ms,
            step=step,
        )
        try:
            reply = await self.run(call)
        except InvalidState as exc:
            # `status` in a problem is the HTTP status: the transfer's goes apart.
            status = exc.extra.get("status")
            raise InvalidState(
                f"transfer {transfer_id} is {status}", transfer_status=status
            ) from None
        transfer = _transfer(reply)
        if transfer.status in ("received", "cancelled"):
            # The index lives in the id's group, not the SKU's (another slot), so it is
            # closed by its own call; on a replay too, in case a crash came in between.
            ready, index = self._transfer_index(transfer_id)
            await self.run(
                sc.index_close(ready=ready, index=index, expires_at=now + self._finished_ms)
            )
        return transfer

    async def _stepped_before(self, transfer_id: str, step: TransferStep) -> Transfer:
        """A step of a transfer that left Redis after the window: the answer
        `transferStep.lua` gave while Redis held it, from PostgreSQL."""
        archived = await self.archive.transfer(transfer_id) if self.archive else None
        if archived is None:
            raise NotFound(f"no transfer {transfer_id}")
        transfer = archived[0]
        if transfer.status in _STEPS_DONE[step]:
            return replace(transfer, replayed=True)
        raise InvalidState(
            f"transfer {transfer_id} is {transfer.status}", transfer_status=transfer.status
        )

    async def ship_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "ship")

    async def receive_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "receive")

    async def cancel_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "cancel")

    async def get_transfer(self, transfer_id: str) -> Transfer:
        try:
            sku = await self._transfer_sku(transfer_id)
        except NotFound:
            archived = await self.archive.transfer(transfer_id) if self.archive else None
            if archived is None:
                raise
            return archived[0]
        raw = await self.batcher.command("HGETALL", self.keys.transfer(sku, transfer_id))
        if not raw:
            raise NotFound(f"no transfer {transfer_id}")
        f = {k.decode(): val.decode() for k, val in raw.items()}
        return Transfer(f["tid"], f["st"], f["sku"], f["from"], f["to"], int(f["qty"]))
