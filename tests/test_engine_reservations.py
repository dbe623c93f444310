"""Reservations: location choice, all-or-nothing across slot groups, expiry, races."""

from __future__ import annotations

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, InvalidState, NotFound
from inventory_cache.models import LineRequest, ReservedLine
from tests.support.clock import ManualClock
from tests.support.redis_state import skus_in_distinct_groups


async def test_line_without_location_prefers_one_location_covering_it(engine: StockEngine) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=2)
    await engine.inbound(ref="b", sku="X", location="south", qty=5)

    res = await engine.reserve(order_id="o", lines=[LineRequest("X", 4)])

    assert res.lines == [ReservedLine("X", 4, "south")]


async def test_line_without_location_follows_priority_then_splits(engine: StockEngine) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=3)
    await engine.inbound(ref="b", sku="X", location="south", qty=3)

    first = await engine.reserve(order_id="o1", lines=[LineRequest("X", 2)])
    split = await engine.reserve(order_id="o2", lines=[LineRequest("X", 4)])

    assert first.lines == [ReservedLine("X", 2, "north")]
    assert split.lines == [ReservedLine("X", 1, "north"), ReservedLine("X", 3, "south")]
    assert (await engine.availability("X")).available == 0


async def test_a_whole_line_goes_to_the_first_priority_location_that_covers_it(
    engine: StockEngine,
) -> None:
    """Priority north, south: north is short, so south, though east (not in the
    priority) holds more."""
    await engine.inbound(ref="a", sku="X", location="north", qty=1)
    await engine.inbound(ref="b", sku="X", location="south", qty=5)
    await engine.inbound(ref="c", sku="X", location="east", qty=10)

    res = await engine.reserve(order_id="o", lines=[LineRequest("X", 3)])

    assert res.lines == [ReservedLine("X", 3, "south")]


async def test_without_stock_at_any_priority_location_a_line_goes_by_location_name(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="a", sku="X", location="west", qty=5)
    await engine.inbound(ref="b", sku="X", location="east", qty=5)

    res = await engine.reserve(order_id="o", lines=[LineRequest("X", 2)])

    assert res.lines == [ReservedLine("X", 2, "east")]
    assert {loc: lv.locked for loc, lv in (await engine.stock("X")).locations.items()} == {
        "east": 2,
        "west": 0,
    }


async def test_a_line_naming_a_location_is_served_before_a_line_of_the_sku_naming_none(
    engine: StockEngine,
) -> None:
    """The buyer who asked for north gets north; the open line takes what is left, so an
    order that the stock can serve is never refused for the order its lines came in."""
    await engine.inbound(ref="a", sku="X", location="north", qty=10)
    await engine.inbound(ref="b", sku="X", location="south", qty=10)

    res = await engine.reserve(
        order_id="o", lines=[LineRequest("X", 1, "north"), LineRequest("X", 10)]
    )

    assert sorted(res.lines, key=lambda ln: ln.location) == [
        ReservedLine("X", 1, "north"),
        ReservedLine("X", 10, "south"),
    ]
    levels = {loc: lv.locked for loc, lv in (await engine.stock("X")).locations.items()}
    assert levels == {"north": 1, "south": 10}


async def test_duplicate_lines_are_summed_before_the_check(engine: StockEngine) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=3)

    with pytest.raises(InsufficientStock) as exc:
        await engine.reserve(order_id="o", lines=[LineRequest("X", 2), LineRequest("X", 2)])

    assert exc.value.lines == [{"sku": "X", "requested": 4, "available": 3}]
    assert (await engine.stock("X")).locations["north"].locked == 0


async def test_multi_group_reservation_is_all_or_nothing(engine: StockEngine) -> None:
    a, b, c = skus_in_distinct_groups(engine, 3)
    for sku in (a, b):
        await engine.inbound(ref="in", sku=sku, location="north", qty=5)
    await engine.inbound(ref="in", sku=c, location="north", qty=1)

    with pytest.raises(InsufficientStock) as exc:
        await engine.reserve(
            order_id="o", lines=[LineRequest(a, 2), LineRequest(b, 2), LineRequest(c, 2)]
        )

    assert exc.value.lines == [{"sku": c, "requested": 2, "available": 1}]
    for sku, expected in ((a, 5), (b, 5), (c, 1)):
        assert (await engine.availability(sku)).available == expected
    with pytest.raises(NotFound):
        await engine.get_reservation("o")


async def test_failed_order_can_be_retried_once_stock_arrives(engine: StockEngine) -> None:
    a, b = skus_in_distinct_groups(engine, 2)
    await engine.inbound(ref="in", sku=a, location="north", qty=5)
    lines = [LineRequest(a, 1), LineRequest(b, 1)]
    with pytest.raises(InsufficientStock):
        await engine.reserve(order_id="o", lines=lines)
    await engine.inbound(ref="in", sku=b, location="north", qty=1)

    res = await engine.reserve(order_id="o", lines=lines)

    assert res.status == "active"
    assert sorted(res.lines, key=lambda ln: ln.sku) == sorted(
        [ReservedLine(a, 1, "north"), ReservedLine(b, 1, "north")], key=lambda ln: ln.sku
    )
    assert (await engine.availability(a)).available == 4


async def test_expiry_sweep_releases_once(engine: StockEngine, clock: ManualClock) -> None:
    await engine.inbound(ref="in", sku="X", location="north", qty=5)
    await engine.reserve(order_id="o", lines=[LineRequest("X", 2)], ttl_seconds=1)
    assert await engine.expire_due() == 0

    clock.advance(1.5)

    assert await engine.expire_due() == 1
    assert await engine.expire_due() == 0
    assert (await engine.availability("X")).available == 5
    assert (await engine.get_reservation("o")).status == "expired"


async def test_ship_after_ttl_lapses_into_expired(engine: StockEngine, clock: ManualClock) -> None:
    await engine.inbound(ref="in", sku="X", location="north", qty=5)
    await engine.reserve(order_id="o", lines=[LineRequest("X", 2)], ttl_seconds=1)
    clock.advance(2)

    with pytest.raises(InvalidState):
        await engine.ship("o")

    assert (await engine.stock("X")).locations["north"].on_hand == 5
    assert (await engine.availability("X")).available == 5
    assert await engine.expire_due() == 0


async def test_shipped_order_is_not_expired_by_the_sweep(
    engine: StockEngine, clock: ManualClock
) -> None:
    await engine.inbound(ref="in", sku="X", location="north", qty=5)
    await engine.reserve(order_id="o", lines=[LineRequest("X", 2)], ttl_seconds=1)
    await engine.ship("o")
    clock.advance(2)

    assert await engine.expire_due() == 0
    assert (await engine.get_reservation("o")).status == "shipped"
    assert (await engine.stock("X")).locations["north"].on_hand == 3


async def test_cancel_after_ship_and_ship_after_cancel_are_invalid(engine: StockEngine) -> None:
    await engine.inbound(ref="in", sku="X", location="north", qty=5)
    await engine.reserve(order_id="shipped", lines=[LineRequest("X", 1)])
    await engine.reserve(order_id="cancelled", lines=[LineRequest("X", 1)])
    await engine.ship("shipped")
    await engine.cancel("cancelled")

    with pytest.raises(InvalidState):
        await engine.cancel("shipped")
    with pytest.raises(InvalidState):
        await engine.ship("cancelled")

    level = (await engine.stock("X")).locations["north"]
    assert (level.on_hand, level.locked) == (4, 0)


async def test_unknown_reservation_is_not_found(engine: StockEngine) -> None:
    for call in (engine.get_reservation, engine.cancel, engine.ship):
        with pytest.raises(NotFound):
            await call("nope")
