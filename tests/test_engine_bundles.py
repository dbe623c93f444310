"""Bundles (kits): a SKU sold as a set of others, on every engine backend (the cluster too).

A bundle line locks qty x component qty of every component, all or none, even when the
components sit in different slot groups; cancel, ship and expiry act on the components;
availability is the whole kits the components cover. Open orders keep what they locked
whatever later happens to the definition.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, NotFound, ValidationError
from inventory_cache.feed import FeedEvent
from inventory_cache.models import (
    Availability,
    Bundle,
    Component,
    LineRequest,
    ReservedBundle,
    ReservedLine,
)
from inventory_cache.script_calls import Call
from tests.support.clock import ManualClock
from tests.support.redis_state import skus_in_distinct_groups


@pytest.fixture
def parts(engine: StockEngine) -> tuple[str, str]:
    """Two component SKUs in different slot groups."""
    a, c = skus_in_distinct_groups(engine, 2)
    return a, c


async def levels(engine: StockEngine, *skus: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(sku, location) → (on_hand, locked)."""
    out = {}
    for sku in skus:
        for loc, lv in (await engine.stock(sku)).locations.items():
            out[(sku, loc)] = (lv.on_hand, lv.locked)
    return out


async def kit_of(engine: StockEngine, a: str, c: str) -> None:
    await engine.put_bundle("kit", [Component(c, 2), Component(a, 1)])


async def test_a_bundle_is_defined_shown_changed_and_deleted(
    engine: StockEngine, parts: tuple[str, str]
) -> None:
    a, c = parts

    made = await engine.put_bundle("kit", [Component(c, 2), Component(a, 1)])
    again = await engine.put_bundle("kit", [Component(a, 1), Component(c, 2)])
    changed = await engine.put_bundle("kit", [Component(a, 3)])

    expected = sorted([Component(a, 1), Component(c, 2)], key=lambda x: x.sku)
    assert made == Bundle("kit", expected, 1)
    assert again == made  # the same definition changes nothing
    assert changed == Bundle("kit", [Component(a, 3)], 2)
    assert await engine.get_bundle("kit") == changed
    await engine.delete_bundle("kit")
    with pytest.raises(NotFound):
        await engine.get_bundle("kit")
    with pytest.raises(NotFound):
        await engine.delete_bundle("kit")
    assert await engine.put_bundle("kit", [Component(a, 1)]) == Bundle("kit", [Component(a, 1)], 4)


@pytest.mark.parametrize(
    "components",
    [
        [],
        [Component(f"s{i}", 1) for i in range(21)],
        [Component("A", 1), Component("A", 2)],
        [Component("kit", 1)],
        [Component("A", 0)],
        [Component("A", 1_000_001)],
        [Component("bad sku", 1)],
    ],
    ids=["none", "21", "duplicate", "itself", "qty-0", "qty-too-big", "bad-sku"],
)
async def test_a_bad_definition_is_refused_and_changes_nothing(
    engine: StockEngine, backend: Any, prefix: str, components: list[Component]
) -> None:
    await engine.put_bundle("kit", [Component("A", 1)])
    before = await backend.hgetall(engine.keys.bundle("kit"))

    with pytest.raises(ValidationError):
        await engine.put_bundle("kit", components)

    assert await backend.hgetall(engine.keys.bundle("kit")) == before


async def test_a_component_may_not_be_a_bundle(engine: StockEngine, backend: Any) -> None:
    await engine.put_bundle("inner", [Component("A", 1)])

    with pytest.raises(ValidationError, match="inner"):
        await engine.put_bundle("outer", [Component("inner", 1), Component("B", 1)])

    assert await backend.exists(engine.keys.bundle("outer")) == 0


async def test_a_bundle_sku_takes_no_per_customer_limit_and_a_limited_sku_is_no_bundle(
    engine: StockEngine, backend: Any
) -> None:
    """A bundle sells as its components, whose limits are checked when it is reserved; a
    limit on the bundle's own SKU would never be: refused rather than ignored."""
    await engine.put_bundle("kit", [Component("A", 1)])
    await engine.set_limit(sku="limited", per_customer=2)

    with pytest.raises(ValidationError, match="kit is a bundle"):
        await engine.set_limit(sku="kit", per_customer=1)
    with pytest.raises(ValidationError, match="limited has a per-customer limit"):
        await engine.put_bundle("limited", [Component("A", 1)])

    assert await backend.exists(engine.keys.limit("kit")) == 0
    assert await backend.exists(engine.keys.bundle("limited")) == 0
    await engine.delete_limit("limited")  # once the limit is gone, it may become a bundle
    assert (await engine.put_bundle("limited", [Component("A", 1)])).sku == "limited"


async def test_availability_is_the_whole_kits_the_components_cover(
    engine: StockEngine, parts: tuple[str, str]
) -> None:
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=a, location="north", qty=5)
    await engine.inbound(ref="2", sku=a, location="south", qty=1)
    await engine.inbound(ref="3", sku=c, location="north", qty=7)
    await engine.inbound(ref="4", sku=c, location="south", qty=3)

    got = await engine.availability("kit")

    # north: min(5 // 1, 7 // 2) = 3; south: min(1, 3 // 2) = 1; total: min(6, 10 // 2) = 5
    assert got == Availability("kit", 5, True, {"north": 3, "south": 1}, tuple(sorted((a, c))))
    (many,) = await engine.availability_many(["kit"])
    assert many == got


async def test_reserving_bundles_locks_every_component_and_answers_the_bundle_line(
    engine: StockEngine, parts: tuple[str, str]
) -> None:
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=a, location="north", qty=10)
    await engine.inbound(ref="2", sku=c, location="north", qty=10)

    res = await engine.reserve(order_id="o", lines=[LineRequest("kit", 3), LineRequest(a, 1)])

    assert sorted(res.lines, key=lambda x: x.sku) == sorted(
        [ReservedLine(a, 4, "north"), ReservedLine(c, 6, "north")], key=lambda x: x.sku
    )
    units = sorted([Component(a, 3), Component(c, 6)], key=lambda x: x.sku)
    assert res.bundles == [ReservedBundle("kit", 3, None, units)]
    assert await levels(engine, a, c) == {(a, "north"): (10, 4), (c, "north"): (10, 6)}
    assert await engine.get_reservation("o") == res
    shipped = await engine.ship("o")
    assert (shipped.status, shipped.bundles) == ("shipped", res.bundles)
    assert await levels(engine, a, c) == {(a, "north"): (6, 0), (c, "north"): (4, 0)}


async def test_a_bundle_order_refused_midway_leaves_no_lock_behind(
    engine: StockEngine, backend: Any, parts: tuple[str, str]
) -> None:
    """The first component's group could lock, the second's could not: nothing stays."""
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=a, location="north", qty=10)
    await engine.inbound(ref="2", sku=c, location="north", qty=3)

    with pytest.raises(InsufficientStock) as refused:
        await engine.reserve(order_id="o", lines=[LineRequest("kit", 2)])

    assert refused.value.lines == [{"sku": c, "requested": 4, "available": 3}]
    assert await levels(engine, a, c) == {(a, "north"): (10, 0), (c, "north"): (3, 0)}
    for sku in (a, c):
        assert await backend.exists(engine.keys.part(engine.keys.group_of(sku), "o")) == 0
    assert await backend.exists(engine.keys.order_index("o")) == 0
    with pytest.raises(NotFound):
        await engine.get_reservation("o")


async def test_open_orders_keep_their_components_when_the_bundle_changes_or_goes(
    engine: StockEngine, parts: tuple[str, str], clock: ManualClock
) -> None:
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=a, location="north", qty=10)
    await engine.inbound(ref="2", sku=c, location="north", qty=10)
    first = await engine.reserve(order_id="o1", lines=[LineRequest("kit", 1)], ttl_seconds=60)
    second = await engine.reserve(order_id="o2", lines=[LineRequest("kit", 1)], ttl_seconds=60)

    await engine.put_bundle("kit", [Component(a, 5)])
    replay = await engine.reserve(order_id="o1", lines=[LineRequest("kit", 1)], ttl_seconds=60)
    await engine.delete_bundle("kit")
    cancelled = await engine.cancel("o1")
    clock.advance(61)
    expired = await engine.expire_due()

    assert replay.replayed and replay.lines == first.lines and replay.bundles == first.bundles
    assert cancelled.bundles == first.bundles
    assert expired == 2  # o2's two parts, one per component group
    assert (await engine.get_reservation("o2")).bundles == second.bundles
    assert await levels(engine, a, c) == {(a, "north"): (10, 0), (c, "north"): (10, 0)}


async def test_concurrent_bundle_and_component_orders_never_oversell(
    engine: StockEngine, parts: tuple[str, str]
) -> None:
    """Kits (a + 2 c) and single units of a and c race for the same stock: each component
    locks exactly what the accepted orders asked of it, never more than it holds."""
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=a, location="north", qty=7)
    await engine.inbound(ref="2", sku=c, location="north", qty=11)
    await engine.inbound(ref="3", sku=c, location="south", qty=2)
    asks = [
        [LineRequest("kit", 1)] if i % 3 == 0 else [LineRequest(a if i % 3 == 1 else c, 1)]
        for i in range(36)
    ]

    results = await asyncio.gather(
        *(engine.reserve(order_id=f"o{i}", lines=ln) for i, ln in enumerate(asks)),
        return_exceptions=True,
    )

    for r in results:
        assert not isinstance(r, BaseException) or isinstance(r, InsufficientStock), r
    taken = {a: 0, c: 0}
    for r in results:
        if not isinstance(r, BaseException):
            for ln in r.lines:
                taken[ln.sku] += ln.qty
    now = await levels(engine, a, c)
    assert taken[a] == sum(lk for (s, _), (_, lk) in now.items() if s == a) <= 7
    assert taken[c] == sum(lk for (s, _), (_, lk) in now.items() if s == c) <= 13
    assert all(lk <= oh for oh, lk in now.values())
    # Demand exceeded supply, so what is left cannot make another kit and one of a or c ran out.
    kit = await engine.availability("kit")
    assert kit.available == 0
    assert taken[a] == 7 or taken[c] == 13


async def test_the_feed_shows_definitions_and_the_bundle_lines_of_reservations(
    engine: StockEngine, backend: Any, parts: tuple[str, str]
) -> None:
    a, c = parts
    await kit_of(engine, a, c)
    await engine.inbound(ref="1", sku=c, location="north", qty=4)
    await engine.inbound(ref="2", sku=a, location="north", qty=4)
    await engine.reserve(order_id="o", lines=[LineRequest("kit", 2)])

    def events(sku: str) -> Any:
        return backend.xrange(engine.keys.events(engine.keys.group_of(sku)))

    kit_group = engine.keys.group_of("kit")
    (defined,) = [
        FeedEvent.from_entry(kit_group, i, f).body
        for i, f in await events("kit")
        if f[b"t"] == b"bundle"
    ]
    (reserved,) = [
        FeedEvent.from_entry(engine.keys.group_of(c), i, f).body
        for i, f in await events(c)
        if f[b"t"] == b"reserve"
    ]

    assert defined["bundle"] == "kit" and defined["rows"] == []
    assert sorted(x["sku"] for x in defined["components"]) == sorted([a, c])
    assert reserved["bundles"] == [
        {"sku": "kit", "qty": 2, "location": None, "components": [{"sku": c, "qty": 4}]}
    ]


async def test_an_order_learns_its_bundles_from_the_reserve_script_itself(
    engine: StockEngine, parts: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a single Redis (one script per order) a bundle's definition sits in its stock
    hash (`bdef`), so an order without bundles is one call, and one with bundles two (the
    first answers the definitions and writes nothing); no separate read of definitions.
    On a cluster an order may span slot groups: the definitions are read first there."""
    a, c = parts
    await kit_of(engine, a, c)
    for sku in (a, c):
        await engine.inbound(ref=f"in-{sku}", sku=sku, location="north", qty=10)
    calls: list[str] = []
    run, many = engine.run, engine.batcher.many

    async def counted_run(call: Call) -> Any:
        calls.append(call.script)
        return await run(call)

    async def counted_many(*args: Any, **kw: Any) -> Any:
        calls.append("read")
        return await many(*args, **kw)

    monkeypatch.setattr(engine, "run", counted_run)
    monkeypatch.setattr(engine.batcher, "many", counted_many)

    plain = await engine.reserve(order_id="o-plain", lines=[LineRequest(a, 1)])
    plain_calls, calls[:] = list(calls), []
    kit = await engine.reserve(order_id="o-kit", lines=[LineRequest("kit", 1)])
    kit_calls = list(calls)

    assert plain.lines == [ReservedLine(a, 1, "north")]
    assert [b.sku for b in kit.bundles] == ["kit"]
    assert await levels(engine, a, c) == {(a, "north"): (10, 2), (c, "north"): (10, 2)}
    if not engine._cluster:
        assert plain_calls == ["reserve_order"]
        assert kit_calls == ["reserve_order", "reserve_order"]
