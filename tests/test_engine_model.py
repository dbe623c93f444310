"""The engine against a plain Python model of the contract, on random operation sequences.

Hypothesis drives every engine operation (movements, counts with and without an
expected value, POS events, safety stock, multi-line reservations with and without
locations, bundles (a kit whose components sit in two slot groups, redefined and deleted
between orders, ordered alone or beside its own components), cancel, ship, expiry through
a manual clock, transfers) with small pools of
ids, so retries with the same body and reuses with another body happen all the time.
After every step the engine must agree with the model: each (sku, location)'s levels,
each reservation and transfer, every result or typed error. And the contract's guarantees are
checked on what the engine reports: available is never negative, locked is exactly
what active reservations and requested transfers hold, and an operation that the model
says changes nothing (a refusal, a replay, a read) leaves every Redis key as it was.

The model is deliberately naive (dicts and loops, no Redis ideas) so that it can be
read as the specification: where it and the engine disagree, one of them is wrong.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory_cache.engine import StockEngine
from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
)
from inventory_cache.keys import Keys
from inventory_cache.models import (
    Availability,
    Bundle,
    Component,
    Level,
    LineRequest,
    Reservation,
    ReservedBundle,
    ReservedLine,
    StockView,
    Transfer,
)
from tests.support.clock import ManualClock
from tests.support.redis_state import scan_keys, snapshot, snapshot_prefix
from tests.support.services import REDIS_URL, make_settings, need_redis

pytestmark = pytest.mark.slow


def without_ledger(snap: dict[bytes, Any]) -> dict[bytes, Any]:
    """A snapshot without what only feeds the ledger: stream lengths, stock versions."""
    out: dict[bytes, Any] = {}
    for k, val in snap.items():
        if isinstance(val, int):
            continue
        if isinstance(val, dict):
            val = {f: x for f, x in val.items() if f != b"v"}
        out[k] = val
    return out


# ---------------------------------------------------------------------- the model
PRIORITY = ("north", "south")  # make_settings' INVENTORY_LOCATION_PRIORITY
LOCATIONS = ("north", "south", "east")


def _skus() -> tuple[str, ...]:
    """Two SKUs sharing a slot group and one in another: same-group and cross-group orders."""
    keys = Keys("x", make_settings("x").slot_groups)
    a = "sku-a"
    same = next(f"sku-b{i}" for i in range(1000) if keys.group_of(f"sku-b{i}") == keys.group_of(a))
    other = next(f"sku-c{i}" for i in range(1000) if keys.group_of(f"sku-c{i}") != keys.group_of(a))
    return (a, same, other)


SKUS = _skus()
BUNDLE = "kit-k"
# What the kit may be defined as: across two groups, within one group, a single component.
DEFINITIONS = (
    (Component(SKUS[0], 1), Component(SKUS[2], 2)),
    (Component(SKUS[0], 2), Component(SKUS[1], 1), Component(SKUS[2], 1)),
    (Component(SKUS[1], 3),),
)
ORDERS = ("o1", "o2", "o3")
TRANSFERS = ("t1", "t2")
REFS = ("r1", "r2")
EVENTS = ("p1", "p2")


INIT_REFS = tuple(f"init-{i}" for i in range(5))


def every_key(keys: Keys) -> list[str]:
    """Every key the ids above can produce (keys.py's layout), for SCAN-free snapshots on
    the shared Redis. On fakeredis each example checks that SCAN finds nothing else."""
    groups = {keys.group_of(i) for i in SKUS + ORDERS + TRANSFERS + (BUNDLE,)}
    out = [keys.ready(g) for g in keys.all_groups()]
    out += [f(g) for g in groups for f in (keys.events, keys.expiry)]
    out += [keys.stock(s) for s in SKUS] + [keys.stock(BUNDLE), keys.bundle(BUNDLE)]
    out += [keys.part(keys.group_of(s), o) for s in SKUS for o in ORDERS]
    out += [keys.order_index(o) for o in ORDERS]
    out += [keys.transfer(s, t) for s in SKUS for t in TRANSFERS]
    out += [keys.transfer_index(t) for t in TRANSFERS]
    for sku in SKUS:
        out += [
            keys.op(kind, sku, ref)
            for kind in ("inbound", "adjust", "return")
            for ref in REFS + INIT_REFS
        ]
        out += [keys.op("pos", sku, ev) for ev in EVENTS]
    return sorted(set(out))


@dataclass
class Order:
    body: tuple[Any, ...]
    expires_at: int
    lines: list[ReservedLine]
    parts: int
    status: str = "active"
    bundles: list[ReservedBundle] = dataclasses.field(default_factory=list)


@dataclass
class TransferRec:
    body: tuple[Any, ...]
    status: str = "requested"


class Model:
    """The contract with dicts. Methods mirror the engine's; `changes` counts state changes."""

    def __init__(self, now: Callable[[], int], group_of: Callable[[str], int]) -> None:
        self.now = now
        self.group_of = group_of
        self.levels: dict[tuple[str, str], list[int]] = {}  # (sku, loc) -> [on_hand, locked, ss]
        self.movements: dict[tuple[str, str, str], tuple[tuple[Any, ...], Level]] = {}
        self.orders: dict[str, Order] = {}
        self.transfers: dict[str, TransferRec] = {}
        self.kits: dict[str, list[Component]] = {}  # bundle sku -> components, sorted
        self.kit_versions: dict[str, int] = defaultdict(int)
        self.changes = 0
        # True when a refused multi-group reservation locked and released a group: the
        # state is back as it was, but the ledger recorded both halves.
        self.compensated = False

    # ---- levels
    def level(self, sku: str, loc: str) -> Level:
        o, lk, s = self.levels.get((sku, loc), [0, 0, 0])
        return Level(sku, loc, o, lk, s, max(0, o - lk - s))

    def _set(self, sku: str, loc: str, o: int, lk: int, s: int) -> None:
        self.levels[(sku, loc)] = [o, lk, s]
        self.changes += 1

    # ---- movements: idempotent by (kind, sku, ref); only successes are remembered
    def _move(
        self,
        kind: str,
        sku: str,
        ref: str,
        loc: str,
        body: tuple[Any, ...],
        *,
        delta: int = 0,
        set_to: int | None = None,
        expected: int | None = None,
        floor: bool = True,
    ) -> Level:
        known = self.movements.get((kind, sku, ref))
        if known is not None:
            if known[0] != body:
                raise IdempotencyMismatch()
            return dataclasses.replace(known[1], replayed=True)
        cur = self.level(sku, loc)
        if expected is not None and expected != cur.on_hand:
            raise InvalidState()
        new = cur.on_hand + delta if set_to is None else set_to
        if floor and new < min(0, cur.on_hand):  # only a decrease may be refused
            raise InvalidState()
        self._set(sku, loc, new, cur.locked, cur.safety_stock)
        self.movements[(kind, sku, ref)] = (body, self.level(sku, loc))
        return self.level(sku, loc)

    def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> Level:
        body = ("inbound", location, qty)
        return self._move("inbound", sku, ref, location, body, delta=qty)

    def adjust(
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
        body = ("adjust", location, reason, delta, set_on_hand, expected_on_hand)
        return self._move(
            "adjust",
            sku,
            ref,
            location,
            body,
            delta=delta or 0,
            set_to=set_on_hand,
            expected=expected_on_hand,
        )

    def record_return(self, *, ref: str, sku: str, location: str, qty: int, restock: bool) -> Level:
        body = ("return", location, qty, restock)
        return self._move("return", sku, ref, location, body, delta=qty if restock else 0)

    def pos_event(self, *, event_id: str, type: str, sku: str, location: str, qty: int) -> Level:
        body = (type, location, qty)
        if type == "count":
            return self._move("pos", sku, event_id, location, body, set_to=qty, floor=False)
        delta = -qty if type == "sale" else qty
        return self._move("pos", sku, event_id, location, body, delta=delta, floor=False)

    def set_safety_stock(self, *, sku: str, location: str, safety_stock: int) -> Level:
        cur = self.level(sku, location)
        if (sku, location) not in self.levels or cur.safety_stock != safety_stock:
            self._set(sku, location, cur.on_hand, cur.locked, safety_stock)
        return self.level(sku, location)

    # ---- bundles
    def put_bundle(self, sku: str, components: Sequence[Component]) -> Bundle:
        canon = sorted(components, key=lambda c: c.sku)
        if self.kits.get(sku) != canon:
            self.kits[sku] = canon
            self.kit_versions[sku] += 1
            self.changes += 1
        return Bundle(sku, canon, self.kit_versions[sku])

    def delete_bundle(self, sku: str) -> None:
        if sku not in self.kits:
            raise NotFound()
        del self.kits[sku]
        self.kit_versions[sku] += 1
        self.changes += 1

    def availability(self, sku: str) -> Availability:
        """A bundle: whole kits per location and from the components' totals."""

        def free(s: str) -> dict[str, int]:
            return {loc: self.level(s, loc).available for x, loc in self.levels if x == s}

        if sku not in self.kits:
            locs = free(sku)
            return Availability(
                sku, sum(locs.values()), sum(locs.values()) > 0, dict(sorted(locs.items()))
            )
        comps = self.kits[sku]
        per = {c.sku: free(c.sku) for c in comps}
        every = sorted({loc for c in comps for loc in per[c.sku]})
        locs = {loc: min(per[c.sku].get(loc, 0) // c.qty for c in comps) for loc in every}
        total = min(sum(per[c.sku].values()) // c.qty for c in comps)
        return Availability(sku, total, total > 0, locs, tuple(c.sku for c in comps))

    # ---- reservations
    def _free(self, sku: str, loc: str, taken: dict[tuple[str, str], int]) -> int:
        return self.level(sku, loc).available - taken.get((sku, loc), 0)

    def _plan_group(
        self, lines: list[LineRequest]
    ) -> tuple[list[ReservedLine], list[dict[str, Any]]]:
        """One slot group's lines: the locations chosen, or the lines that fall short.
        Lines naming a location are served first, then the open ones from what is left;
        the plan and the shortfalls keep the lines' (sku, location) order."""
        taken: dict[tuple[str, str], int] = defaultdict(int)
        ordered = sorted(lines, key=lambda ln: (ln.sku, ln.location or ""))
        picked: dict[int, list[tuple[str, int]]] = {}
        short_of: dict[int, dict[str, Any]] = {}
        serve_first = [i for i, ln in enumerate(ordered) if ln.location is not None]
        serve_then = [i for i, ln in enumerate(ordered) if ln.location is None]
        for i in serve_first + serve_then:
            ln = ordered[i]
            if ln.location is not None:
                free = self._free(ln.sku, ln.location, taken)
                picks = [(ln.location, ln.qty)] if free >= ln.qty else []
                if not picks:
                    short_of[i] = {"sku": ln.sku, "requested": ln.qty, "available": max(free, 0)}
            else:
                known = sorted(loc for s, loc in self.levels if s == ln.sku)
                locs = [p for p in PRIORITY if p in known] + [
                    loc for loc in known if loc not in PRIORITY
                ]
                whole = [loc for loc in locs if self._free(ln.sku, loc, taken) >= ln.qty]
                if whole:
                    picks = [(whole[0], ln.qty)]
                else:
                    need, total, picks = ln.qty, 0, []
                    for loc in locs:
                        free = self._free(ln.sku, loc, taken)
                        if free > 0:
                            total += free
                            if need > 0:
                                picks.append((loc, min(free, need)))
                                need -= min(free, need)
                    if need > 0:
                        short_of[i] = {"sku": ln.sku, "requested": ln.qty, "available": total}
                        picks = []
            for loc, q in picks:
                taken[(ln.sku, loc)] += q
            picked[i] = picks
        plan = [
            ReservedLine(ordered[i].sku, q, loc)
            for i in range(len(ordered))
            for loc, q in picked[i]
        ]
        short = [short_of[i] for i in range(len(ordered)) if i in short_of]
        return plan, short

    def _lock(self, lines: list[ReservedLine], sign: int, ship: bool = False) -> None:
        for ln in lines:
            cur = self.level(ln.sku, ln.location)
            on_hand = cur.on_hand - ln.qty if ship else cur.on_hand
            self._set(ln.sku, ln.location, on_hand, cur.locked + sign * ln.qty, cur.safety_stock)

    def _view(self, order_id: str, order: Order, replayed: bool = False) -> Reservation:
        status = order.status
        if status == "active" and self.now() >= order.expires_at:
            status = "expired"  # locks are held until the sweep, but the order is over
        return Reservation(
            order_id,
            status,  # type: ignore[arg-type]
            order.expires_at,
            list(order.lines),
            replayed,
            list(order.bundles),
        )

    def reserve(
        self, *, order_id: str, lines: Sequence[LineRequest], ttl_seconds: int | None = None
    ) -> Reservation:
        merged: dict[tuple[str, str | None], int] = defaultdict(int)
        for ln in lines:
            merged[(ln.sku, ln.location)] += ln.qty
        ttl = 900 if ttl_seconds is None else ttl_seconds
        body = (tuple(sorted((s, loc or "", q) for (s, loc), q in merged.items())), ttl)
        known = self.orders.get(order_id)
        if known is not None:
            if known.body != body:
                raise IdempotencyMismatch()
            return self._view(order_id, known, replayed=True)
        # A kit line is its components' lines (qty x each), summed with the other lines.
        expanded: dict[tuple[str, str | None], int] = defaultdict(int)
        kits: list[ReservedBundle] = []
        for (sku, loc), q in merged.items():
            if sku not in self.kits:
                expanded[(sku, loc)] += q
                continue
            units = [Component(c.sku, q * c.qty) for c in self.kits[sku]]
            kits.append(ReservedBundle(sku, q, loc, units))
            for c in self.kits[sku]:
                expanded[(c.sku, loc)] += q * c.qty
        kits.sort(key=lambda b: (b.sku, b.location or ""))
        groups: dict[int, list[LineRequest]] = defaultdict(list)
        for (sku, loc), q in expanded.items():
            groups[self.group_of(sku)].append(LineRequest(sku, q, loc))
        plans = {g: self._plan_group(groups[g]) for g in sorted(groups)}
        short = [s for _, shorts in plans.values() for s in shorts]
        if short:
            self.compensated = any(not shorts for _, shorts in plans.values())
            raise InsufficientStock(short)
        locked = [ln for plan, _ in plans.values() for ln in plan]
        self._lock(locked, +1)
        self.orders[order_id] = Order(
            body, self.now() + ttl * 1000, locked, len(plans), bundles=kits
        )
        return self._view(order_id, self.orders[order_id])

    def get_reservation(self, order_id: str) -> Reservation:
        if order_id not in self.orders:
            raise NotFound()
        return self._view(order_id, self.orders[order_id])

    def _settle(self, order_id: str, target: str) -> Reservation:
        order = self.orders.get(order_id)
        if order is None:
            raise NotFound()
        if order.status == target:
            return self._view(order_id, order, replayed=True)
        if order.status != "active":
            raise InvalidState()
        if self.now() >= order.expires_at:
            self._lock(order.lines, -1)  # too late: the reservation expires instead
            order.status = "expired"
            raise InvalidState()
        self._lock(order.lines, -1, ship=target == "shipped")
        order.status = target
        return self._view(order_id, order)

    def cancel(self, order_id: str) -> Reservation:
        return self._settle(order_id, "cancelled")

    def ship(self, order_id: str) -> Reservation:
        return self._settle(order_id, "shipped")

    def expire_due(self) -> int:
        parts = 0
        for order in self.orders.values():
            if order.status == "active" and order.expires_at <= self.now():
                self._lock(order.lines, -1)
                order.status = "expired"
                parts += order.parts
        return parts

    # ---- transfers
    def _transfer(self, tid: str, replayed: bool = False) -> Transfer:
        t = self.transfers[tid]
        sku, frm, to, qty = t.body
        return Transfer(tid, t.status, sku, frm, to, qty, replayed)  # type: ignore[arg-type]

    def request_transfer(
        self, *, transfer_id: str, sku: str, from_location: str, to_location: str, qty: int
    ) -> Transfer:
        body = (sku, from_location, to_location, qty)
        known = self.transfers.get(transfer_id)
        if known is not None:
            if known.body != body:
                raise IdempotencyMismatch()
            return self._transfer(transfer_id, replayed=True)
        free = self.level(sku, from_location).available
        if free < qty:
            raise InsufficientStock([{"sku": sku, "requested": qty, "available": free}])
        self._lock([ReservedLine(sku, qty, from_location)], +1)
        self.transfers[transfer_id] = TransferRec(body)
        return self._transfer(transfer_id)

    def _step(self, tid: str, frm: str, to: str, done: set[str]) -> Transfer:
        t = self.transfers.get(tid)
        if t is None:
            raise NotFound()
        if t.status in done:
            return self._transfer(tid, replayed=True)
        if t.status != frm:
            raise InvalidState()
        sku, source, dest, qty = t.body
        if to == "in_transit":
            self._lock([ReservedLine(sku, qty, source)], -1, ship=True)
        elif to == "received":
            cur = self.level(sku, dest)
            self._set(sku, dest, cur.on_hand + qty, cur.locked, cur.safety_stock)
        else:
            self._lock([ReservedLine(sku, qty, source)], -1)
        t.status = to
        self.changes += 1
        return self._transfer(tid)

    def ship_transfer(self, transfer_id: str) -> Transfer:
        return self._step(transfer_id, "requested", "in_transit", {"in_transit", "received"})

    def receive_transfer(self, transfer_id: str) -> Transfer:
        return self._step(transfer_id, "in_transit", "received", {"received"})

    def cancel_transfer(self, transfer_id: str) -> Transfer:
        return self._step(transfer_id, "requested", "cancelled", {"cancelled"})

    def get_transfer(self, transfer_id: str) -> Transfer:
        if transfer_id not in self.transfers:
            raise NotFound()
        return self._transfer(transfer_id)


# ---------------------------------------------------------------------- the machine
Outcome = tuple[str, Any]


def outcome_of(fn: Callable[..., Any], *args: Any, **kw: Any) -> Outcome:
    try:
        return ("ok", fn(*args, **kw))
    except (IdempotencyMismatch, InsufficientStock, InvalidState, NotFound) as exc:
        return ("error", exc)


async def async_outcome_of(coro: Any) -> Outcome:
    try:
        return ("ok", await coro)
    except (IdempotencyMismatch, InsufficientStock, InvalidState, NotFound) as exc:
        return ("error", exc)


def same(got: Outcome, want: Outcome) -> bool:
    if got[0] != want[0]:
        return False
    if got[0] == "ok":
        return bool(got[1] == want[1])
    if type(got[1]) is not type(want[1]):
        return False
    return not isinstance(got[1], InsufficientStock) or got[1].lines == want[1].lines


def show(o: Outcome) -> str:
    if o[0] == "ok":
        return repr(o[1])
    exc = o[1]
    return f"{type(exc).__name__}({getattr(exc, 'lines', exc)})"


refs = st.sampled_from(REFS)
skus = st.sampled_from(SKUS)
locations = st.sampled_from(LOCATIONS)
qtys = st.integers(1, 5)
order_ids = st.sampled_from(ORDERS)
transfer_ids = st.sampled_from(TRANSFERS)
lines = st.lists(
    st.builds(LineRequest, skus | st.just(BUNDLE), st.integers(1, 3), st.none() | locations),
    min_size=1,
    max_size=3,
)
definitions = st.sampled_from(DEFINITIONS)


class EngineMachine(RuleBasedStateMachine):
    """One fresh prefix (or fakeredis server), engine, clock and model per example."""

    backend = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        if self.backend == "redis":
            self.client: Any = aredis.Redis.from_url(REDIS_URL)
        else:
            import fakeredis

            self.client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.prefix = _fresh_prefix()
        self.engine = StockEngine(self.client, make_settings(self.prefix), clock=self.clock)
        self.model = Model(self.clock, self.engine.keys.group_of)
        self.all_keys = every_key(self.engine.keys)
        self.last: tuple[str, dict[str, Any]] | None = None
        self.run(self.engine.mark_ready())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def check_and_drop() -> None:
            if self.backend == "fakeredis":  # a private server: SCAN is cheap and complete
                stray = set(await scan_keys(self.client, self.prefix)) - {
                    k.encode() for k in self.all_keys
                }
                assert not stray, f"keys outside every_key(): {sorted(stray)[:5]}"
            else:
                await self.client.delete(*self.all_keys)
            await self.client.aclose()

        try:
            self.run(check_and_drop())
        finally:
            self.loop.close()

    async def snapshot(self) -> dict[bytes, Any]:
        # fakeredis is private to the example: SCAN is complete and cheaper than a TYPE
        # per possible key; the shared Redis holds everyone's keys, so SCAN would be slow.
        if self.backend == "fakeredis":
            return await snapshot_prefix(self.client, self.prefix)
        return await snapshot(self.client, self.all_keys)

    # ---- one operation on both sides
    def do(self, op: str, **kw: Any) -> None:
        """Run `op` on the model, then the engine; same answer, and no change if none is due."""
        self.last = (op, kw)
        changes = self.model.changes
        self.model.compensated = False
        want = outcome_of(getattr(self.model, op), **kw)
        unchanged = self.model.changes == changes
        before = self.run(self.snapshot()) if unchanged else None

        got = self.run(async_outcome_of(getattr(self.engine, op)(**kw)))

        assert same(got, want), f"{op}({kw}): engine {show(got)}, model {show(want)}"
        replayed = want[0] == "ok" and getattr(want[1], "replayed", False)
        event(f"{op}: {type(want[1]).__name__}{' replayed' if replayed else ''}")
        if before is not None:
            after = self.run(self.snapshot())
            if self.model.compensated:
                assert without_ledger(after) == without_ledger(before), op
            else:
                assert after == before, f"{op}({kw}) changed Redis"

    @initialize(stock=st.lists(st.tuples(skus, locations, st.integers(1, 20)), max_size=5))
    def stock_up(self, stock: list[tuple[str, str, int]]) -> None:
        for i, (sku, loc, qty) in enumerate(stock):
            self.do("inbound", ref=INIT_REFS[i], sku=sku, location=loc, qty=qty)

    @initialize(definition=definitions)
    def define_kit(self, definition: tuple[Component, ...]) -> None:
        self.do("put_bundle", sku=BUNDLE, components=list(definition))

    # ---- bundles: open orders keep what they locked whatever happens to the definition
    @rule(definition=definitions)
    def put_bundle(self, definition: tuple[Component, ...]) -> None:
        self.do("put_bundle", sku=BUNDLE, components=list(definition))

    @rule()
    def delete_bundle(self) -> None:
        self.do("delete_bundle", sku=BUNDLE)

    # ---- movements
    @rule(ref=refs, sku=skus, location=locations, qty=qtys)
    def inbound(self, ref: str, sku: str, location: str, qty: int) -> None:
        self.do("inbound", ref=ref, sku=sku, location=location, qty=qty)

    @rule(
        ref=refs,
        sku=skus,
        location=locations,
        reason=st.sampled_from(("damage", "found", "count")),
        change=st.tuples(st.just("delta"), st.integers(-6, 6).filter(bool))
        | st.tuples(st.just("set"), st.integers(0, 12)),
        expected=st.none() | st.just("current") | st.integers(0, 12),
    )
    def adjust(
        self,
        ref: str,
        sku: str,
        location: str,
        reason: str,
        change: tuple[str, int],
        expected: int | str | None,
    ) -> None:
        if expected == "current":  # a count that still matches: the compare-and-set succeeds
            # (unless POS sales drove on_hand below 0: expected_on_hand must be >= 0)
            expected = max(0, self.model.level(sku, location).on_hand)
        kind, value = change
        self.do(
            "adjust",
            ref=ref,
            sku=sku,
            location=location,
            reason=reason,
            delta=value if kind == "delta" else None,
            set_on_hand=value if kind == "set" else None,
            expected_on_hand=expected,
        )

    @rule(ref=refs, sku=skus, location=locations, qty=qtys, restock=st.booleans())
    def record_return(self, ref: str, sku: str, location: str, qty: int, restock: bool) -> None:
        self.do("record_return", ref=ref, sku=sku, location=location, qty=qty, restock=restock)

    @rule(
        event_id=st.sampled_from(EVENTS),
        type=st.sampled_from(("sale", "return", "count")),
        sku=skus,
        location=locations,
        qty=st.integers(1, 6),
    )
    def pos_event(self, event_id: str, type: str, sku: str, location: str, qty: int) -> None:
        if type == "count":
            qty -= 1  # a count may be 0
        self.do("pos_event", event_id=event_id, type=type, sku=sku, location=location, qty=qty)

    @rule(sku=skus, location=locations, safety_stock=st.integers(0, 3))
    def set_safety_stock(self, sku: str, location: str, safety_stock: int) -> None:
        self.do("set_safety_stock", sku=sku, location=location, safety_stock=safety_stock)

    # ---- reservations
    @rule(order_id=order_ids, lines=lines, ttl=st.sampled_from((None, 30, 120)))
    def reserve(self, order_id: str, lines: list[LineRequest], ttl: int | None) -> None:
        self.do("reserve", order_id=order_id, lines=lines, ttl_seconds=ttl)

    def pick(self, data: st.DataObject, used: Iterable[str], pool: Sequence[str]) -> str:
        """Mostly an id already in use (its next step, or a late one), sometimes any id.

        The rules that call this run only once something exists to settle, so that they
        are not mostly NotFound; an id of the pool never used is still drawn often."""
        known = sorted(used)
        chances = data.draw(st.integers(0, 3), label="known id (0 = any)")
        return data.draw(st.sampled_from(known if known and chances else pool), label="id")

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.do("cancel", order_id=self.pick(data, self.model.orders, ORDERS))

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        self.do("ship", order_id=self.pick(data, self.model.orders, ORDERS))

    @rule(seconds=st.sampled_from((1, 10, 40, 150, 1000)), sweep=st.booleans())
    def time_passes(self, seconds: int, sweep: bool) -> None:
        """The clock moves; the scheduler's sweep may or may not run before the next call."""
        self.clock.advance(seconds)
        if sweep:
            self.do("expire_due")

    # ---- transfers
    @rule(
        transfer_id=transfer_ids,
        sku=skus,
        route=st.permutations(LOCATIONS).map(lambda p: p[:2]),
        qty=st.integers(1, 3),
    )
    def request_transfer(self, transfer_id: str, sku: str, route: Sequence[str], qty: int) -> None:
        self.do(
            "request_transfer",
            transfer_id=transfer_id,
            sku=sku,
            from_location=route[0],
            to_location=route[1],
            qty=qty,
        )

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data())
    def ship_transfer(self, data: st.DataObject) -> None:
        self.do("ship_transfer", transfer_id=self.pick(data, self.model.transfers, TRANSFERS))

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data())
    def receive_transfer(self, data: st.DataObject) -> None:
        self.do("receive_transfer", transfer_id=self.pick(data, self.model.transfers, TRANSFERS))

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data())
    def cancel_transfer(self, data: st.DataObject) -> None:
        self.do("cancel_transfer", transfer_id=self.pick(data, self.model.transfers, TRANSFERS))

    # ---- a client that did not hear the answer sends the same call again
    @rule()
    def retry_last(self) -> None:
        if self.last is not None:
            self.do(self.last[0], **self.last[1])

    # ---- after every step
    @invariant()
    def engine_matches_model_and_spec(self) -> None:
        stocks, avail, reservations, transfers, kit = self.run(self.observe())
        for sku, view in zip(SKUS, stocks, strict=True):
            levels = {loc: self.model.level(s, loc) for s, loc in self.model.levels if s == sku}
            assert view.locations == dict(sorted(levels.items())), sku
        for sku, a in zip(SKUS, avail, strict=True):
            locs = {loc: lv.available for loc, lv in stocks[SKUS.index(sku)].locations.items()}
            assert a == Availability(sku, sum(locs.values()), sum(locs.values()) > 0, locs)
        for oid, got in zip(ORDERS, reservations, strict=True):
            want = outcome_of(self.model.get_reservation, oid)
            assert same(got, want), f"{oid}: engine {show(got)}, model {show(want)}"
        for tid, got in zip(TRANSFERS, transfers, strict=True):
            want = outcome_of(self.model.get_transfer, tid)
            assert same(got, want), f"{tid}: engine {show(got)}, model {show(want)}"
        assert kit == self.model.availability(BUNDLE)

        # the guarantees on what the engine reports. An order past its TTL already reads as
        # expired, but keeps its locks until the sweep (or a late cancel/ship) ends it.
        holding: dict[tuple[str, str], int] = defaultdict(int)
        for oid, (kind, res) in zip(ORDERS, reservations, strict=True):
            live = kind == "ok" and (
                res.status == "active"
                or (res.status == "expired" and self.model.orders[oid].status == "active")
            )
            for ln in res.lines if live else ():
                holding[(ln.sku, ln.location)] += ln.qty
        for kind, t in transfers:
            if kind == "ok" and t.status == "requested":
                holding[(t.sku, t.from_location)] += t.qty
        for view in stocks:
            for loc, lv in view.locations.items():
                assert lv.available == max(0, lv.on_hand - lv.locked - lv.safety_stock) >= 0
                assert lv.locked == holding.pop((view.sku, loc), 0), (view.sku, loc)
        assert not holding, f"locks held where no stock is recorded: {holding}"

    async def observe(
        self,
    ) -> tuple[list[StockView], list[Availability], list[Outcome], list[Outcome], Availability]:
        e = self.engine
        stocks, avail, reservations, transfers, kit = await asyncio.gather(
            asyncio.gather(*(e.stock(s) for s in SKUS)),
            e.availability_many(list(SKUS)),
            asyncio.gather(*(async_outcome_of(e.get_reservation(o)) for o in ORDERS)),
            asyncio.gather(*(async_outcome_of(e.get_transfer(t)) for t in TRANSFERS)),
            e.availability(BUNDLE),
        )
        return list(stocks), avail, list(reservations), list(transfers), kit


def _fresh_prefix() -> str:
    """A key prefix of its own for every example (Redis is shared with other tests)."""
    return "tm" + uuid.uuid4().hex[:10]


@pytest.mark.timeout(900)  # passing takes well under a minute; shrinking a failure, longer
@pytest.mark.parametrize("backend", ["redis", "fakeredis"])
def test_engine_behaves_like_the_model(backend: str) -> None:
    """Random operation sequences with retries and reused ids keep the contract, as the model."""
    if backend == "redis":
        need_redis()
    machine = type(f"EngineMachine_{backend}", (EngineMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def test_increases_are_taken_while_pos_sales_keep_on_hand_negative(
    engine: StockEngine,
) -> None:
    """Till sales may run on_hand below 0 (physical truth wins); goods that then arrive
    or come back must still be counted, or on_hand stays wrong until a full count."""
    await engine.inbound(ref="po", sku="X", location="north", qty=1)
    await engine.pos_event(event_id="p1", type="sale", sku="X", location="north", qty=4)

    after = [
        await engine.inbound(ref="po2", sku="X", location="north", qty=1),
        await engine.pos_event(event_id="p2", type="return", sku="X", location="north", qty=1),
        await engine.record_return(ref="r", sku="X", location="north", qty=1, restock=False),
        await engine.adjust(ref="f", sku="X", location="north", reason="found", delta=1),
    ]

    assert [lv.on_hand for lv in after] == [-2, -1, -1, 0]
    with pytest.raises(InvalidState):  # a decrease below 0 is still refused
        await engine.adjust(ref="d", sku="X", location="north", reason="damage", delta=-1)


async def test_retry_after_the_ttl_replays_the_reservation_as_expired(
    engine: StockEngine, clock: ManualClock
) -> None:
    """Before the sweep ran, a retried checkout must not be told its stock is still held."""
    await engine.inbound(ref="po", sku="X", location="north", qty=5)
    first = await engine.reserve(order_id="o", lines=[LineRequest("X", 2)], ttl_seconds=30)
    clock.advance(30)

    again = await engine.reserve(order_id="o", lines=[LineRequest("X", 2)], ttl_seconds=30)

    assert again == dataclasses.replace(first, status="expired", replayed=True)
    assert again == dataclasses.replace(await engine.get_reservation("o"), replayed=True)
