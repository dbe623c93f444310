"""The worked examples of docs/contract.md, field by field, on real Redis and on fakeredis."""

from __future__ import annotations

from inventory_cache.engine import StockEngine
from inventory_cache.models import Level, LineRequest


def lv(sku: str, loc: str, on_hand: int, locked: int, available: int) -> Level:
    return Level(sku, loc, on_hand, locked, 0, available)


async def test_inbound_then_reserve_then_cancel(engine: StockEngine) -> None:
    assert await engine.inbound(ref="po-1", sku="phoneA", location="north", qty=10) == lv(
        "phoneA", "north", 10, 0, 10
    )
    await engine.reserve(order_id="o-1", lines=[LineRequest("phoneA", 1)])
    assert (await engine.stock("phoneA")).locations["north"] == lv("phoneA", "north", 10, 1, 9)

    cancelled = await engine.cancel("o-1")

    assert cancelled.status == "cancelled"
    assert (await engine.stock("phoneA")).locations["north"] == lv("phoneA", "north", 10, 0, 10)


async def test_reserve_then_ship_drops_on_hand_and_locked(engine: StockEngine) -> None:
    await engine.inbound(ref="po-1", sku="phoneA", location="north", qty=10)
    await engine.reserve(order_id="o-1", lines=[LineRequest("phoneA", 1)])

    shipped = await engine.ship("o-1")

    assert shipped.status == "shipped"
    assert (await engine.stock("phoneA")).locations["north"] == lv("phoneA", "north", 9, 0, 9)
    avail = await engine.availability("phoneA")
    assert (avail.available, avail.in_stock, avail.locations) == (9, True, {"north": 9})


async def test_transfer_request_ship_receive(engine: StockEngine) -> None:
    await engine.inbound(ref="po-b", sku="B", location="north", qty=1000)

    requested = await engine.request_transfer(
        transfer_id="tr-1", sku="B", from_location="north", to_location="south", qty=100
    )
    assert requested.status == "requested"
    assert (await engine.stock("B")).locations["north"] == lv("B", "north", 1000, 100, 900)

    assert (await engine.ship_transfer("tr-1")).status == "in_transit"
    assert (await engine.stock("B")).locations == {"north": lv("B", "north", 900, 0, 900)}

    assert (await engine.receive_transfer("tr-1")).status == "received"
    assert (await engine.stock("B")).locations == {
        "north": lv("B", "north", 900, 0, 900),
        "south": lv("B", "south", 100, 0, 100),
    }


async def test_unknown_sku_is_zero_and_out_of_stock(engine: StockEngine) -> None:
    avail = await engine.availability("never-seen")
    assert (avail.available, avail.in_stock, avail.locations) == (0, False, {})


async def test_pos_sale_below_locked_is_recorded_and_available_is_zero(engine: StockEngine) -> None:
    await engine.inbound(ref="po-1", sku="phoneA", location="north", qty=2)
    await engine.reserve(order_id="o-1", lines=[LineRequest("phoneA", 2, "north")])

    level = await engine.pos_event(
        event_id="till-1", type="sale", sku="phoneA", location="north", qty=1
    )

    assert level == lv("phoneA", "north", 1, 2, 0)


async def test_safety_stock_is_held_back_from_available(engine: StockEngine) -> None:
    await engine.inbound(ref="po-1", sku="phoneA", location="north", qty=10)

    level = await engine.set_safety_stock(sku="phoneA", location="north", safety_stock=3)

    assert level == Level("phoneA", "north", 10, 0, 3, 7)
    assert (await engine.availability("phoneA")).available == 7
