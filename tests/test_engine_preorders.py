"""Incoming stock and pre-orders, in the scripts that lock the stock: a line beyond what is
available takes the rest from incoming stock up to the location's pre-order limit; a
receipt turns pre-orders into locks in the order they were taken; a cancelled or shortened
inbound takes the cover from the latest pre-orders; nothing is ever oversold. Every test
runs on every backend and on both reserve paths (one script, and a script per group)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, InvalidState, NotFound
from inventory_cache.models import LineRequest, ReservedLine
from tests.support.clock import ManualClock
from tests.support.redis_state import skus_in_distinct_groups
from tests.support.services import make_settings

DAY = 86_400_000
T1 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
T2 = T1 + 7 * DAY


@pytest.fixture(params=["one script", "script per group"])
async def engine(
    request: pytest.FixtureRequest, backend: Any, prefix: str, clock: ManualClock
) -> StockEngine:
    eng = StockEngine(
        backend, make_settings(prefix), clock=clock, one_script=request.param == "one script"
    )
    await eng.mark_ready()
    return eng


async def level(engine: StockEngine, sku: str, loc: str = "north") -> tuple[int, int]:
    lv = (await engine.stock(sku)).locations[loc]
    return lv.on_hand, lv.locked


async def awaiting(engine: StockEngine, sku: str, loc: str = "north") -> int:
    raw = await engine.client.hget(engine.keys.stock(sku), f"q:{loc}")
    return int(raw or 0)


async def preorder_lines(engine: StockEngine, order_id: str) -> list[tuple[int, str | None]]:
    r = await engine.get_reservation(order_id)
    return [(ln.qty, ln.preorder_status) for ln in r.lines if ln.preorder]


async def sale_ready(engine: StockEngine, sku: str, *, on_hand: int, incoming: int, limit: int):
    if on_hand:
        await engine.inbound(ref="start", sku=sku, location="north", qty=on_hand)
    await engine.incoming.put(
        ref=f"po-{sku}", sku=sku, location="north", qty=incoming, expected_at=T1
    )
    await engine.set_preorder_limit(sku=sku, location="north", limit=limit)


async def test_a_line_beyond_the_stock_is_pre_ordered_up_to_the_limit_then_refused(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=3, incoming=10, limit=4)

    first = await engine.reserve(order_id="o1", lines=[LineRequest("X", 5, "north")])
    second = await engine.reserve(order_id="o2", lines=[LineRequest("X", 2)])
    with pytest.raises(InsufficientStock) as refused:
        await engine.reserve(order_id="o3", lines=[LineRequest("X", 1)])

    assert first.lines == [
        ReservedLine("X", 3, "north"),
        ReservedLine("X", 2, "north", True, T1, "awaiting"),
    ]
    assert second.lines == [ReservedLine("X", 2, "north", True, T1, "awaiting")]
    assert refused.value.lines == [{"sku": "X", "requested": 1, "available": 0}]
    assert await level(engine, "X") == (3, 3)
    assert await awaiting(engine, "X") == 4
    assert (await engine.availability("X")).available == 0


async def test_without_a_limit_or_incoming_stock_a_short_line_is_refused_as_before(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="start", sku="X", location="north", qty=2)
    await engine.incoming.put(ref="po", sku="X", location="north", qty=10, expected_at=T1)
    await engine.inbound(ref="start", sku="Y", location="north", qty=2)
    await engine.set_preorder_limit(sku="Y", location="north", limit=5)

    for sku in ("X", "Y"):
        with pytest.raises(InsufficientStock) as refused:
            await engine.reserve(order_id=f"o-{sku}", lines=[LineRequest(sku, 3)])
        assert refused.value.lines == [{"sku": sku, "requested": 3, "available": 2}]
    assert await awaiting(engine, "X") == await awaiting(engine, "Y") == 0


async def test_the_expected_date_is_the_incoming_record_that_covers_the_line_in_turn(
    engine: StockEngine,
) -> None:
    await engine.incoming.put(ref="late", sku="X", location="north", qty=3, expected_at=T2)
    await engine.incoming.put(ref="soon", sku="X", location="north", qty=2, expected_at=T1)
    await engine.set_preorder_limit(sku="X", location="north", limit=5)

    a = await engine.reserve(order_id="a", lines=[LineRequest("X", 2)])
    b = await engine.reserve(order_id="b", lines=[LineRequest("X", 1)])

    assert [ln.expected_at for ln in a.lines] == [T1]
    assert [ln.expected_at for ln in b.lines] == [T2]


async def test_a_receipt_converts_pre_orders_in_the_order_taken_and_uncovers_the_rest(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=6, limit=6)
    for order_id, qty in (("o1", 2), ("o2", 3), ("o3", 1)):
        await engine.reserve(order_id=order_id, lines=[LineRequest("X", qty)])

    received = await engine.incoming.receive("po-X", qty=4)

    # o2 (3) does not fit in the 2 left, and o3 does not jump the queue; with nothing
    # more incoming, both lose their cover.
    assert (received.status, received.received_qty) == ("received", 4)
    assert [(c.order_id, c.qty, c.state) for c in received.preorders] == [
        ("o1", 2, "locked"),
        ("o3", 1, "uncovered"),
        ("o2", 3, "uncovered"),
    ]
    assert await preorder_lines(engine, "o1") == [(2, "locked")]
    assert await preorder_lines(engine, "o2") == [(3, "uncovered")]
    assert await level(engine, "X") == (4, 2)
    assert await awaiting(engine, "X") == 0
    assert (await engine.availability("X")).available == 2


async def test_pre_orders_still_covered_by_later_incoming_keep_waiting(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=2, limit=10)
    await engine.incoming.put(ref="po-2", sku="X", location="north", qty=5, expected_at=T2)
    for order_id, qty in (("o1", 2), ("o2", 3)):
        await engine.reserve(order_id=order_id, lines=[LineRequest("X", qty)])

    await engine.incoming.receive("po-X")

    assert await preorder_lines(engine, "o1") == [(2, "locked")]
    assert await preorder_lines(engine, "o2") == [(3, "awaiting")]
    assert await level(engine, "X") == (2, 2)
    assert await awaiting(engine, "X") == 3


async def test_a_shortened_inbound_uncovers_the_latest_pre_orders_only(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=6, limit=6)
    for order_id, qty in (("o1", 2), ("o2", 2), ("o3", 2)):
        await engine.reserve(order_id=order_id, lines=[LineRequest("X", qty)])

    changed = await engine.incoming.put(
        ref="po-X", sku="X", location="north", qty=3, expected_at=T1
    )

    assert [(c.order_id, c.state) for c in changed.preorders] == [
        ("o3", "uncovered"),
        ("o2", "uncovered"),
    ]
    assert await preorder_lines(engine, "o1") == [(2, "awaiting")]
    assert await awaiting(engine, "X") == 2
    # One unit of room is left under the shortened inbound.
    more = await engine.reserve(order_id="o4", lines=[LineRequest("X", 1)])
    assert [ln.preorder_status for ln in more.lines] == ["awaiting"]
    with pytest.raises(InsufficientStock):
        await engine.reserve(order_id="o5", lines=[LineRequest("X", 1)])


async def test_a_cancelled_inbound_uncovers_every_pre_order_on_it(engine: StockEngine) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=5, limit=5)
    await engine.reserve(order_id="o1", lines=[LineRequest("X", 2)])

    cancelled = await engine.incoming.cancel("po-X")

    assert cancelled.status == "cancelled"
    assert [(c.order_id, c.state) for c in cancelled.preorders] == [("o1", "uncovered")]
    assert await awaiting(engine, "X") == 0
    assert await level(engine, "X") == (0, 0)


async def test_an_order_ships_only_once_every_pre_order_line_is_locked(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=1, incoming=2, limit=2)
    await engine.reserve(order_id="o1", lines=[LineRequest("X", 3)])

    with pytest.raises(InvalidState) as early:
        await engine.ship("o1")
    assert early.value.extra["reservation_status"] == "active"
    assert (await engine.get_reservation("o1")).status == "active"

    await engine.incoming.receive("po-X")
    shipped = await engine.ship("o1")

    assert shipped.status == "shipped"
    assert await level(engine, "X") == (0, 0)
    assert await awaiting(engine, "X") == 0


async def test_an_uncovered_order_cannot_ship_and_cancels_cleanly(engine: StockEngine) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=2, limit=2)
    await engine.reserve(order_id="o1", lines=[LineRequest("X", 2)])
    await engine.incoming.cancel("po-X")

    with pytest.raises(InvalidState):
        await engine.ship("o1")
    cancelled = await engine.cancel("o1")

    assert cancelled.status == "cancelled"
    assert [(ln.qty, ln.preorder, ln.preorder_status) for ln in cancelled.lines] == [
        (2, True, None)
    ]
    assert await level(engine, "X") == (0, 0)
    assert await engine.client.hlen(engine.keys.preorders("X")) == 1  # only the sequence


async def test_cancel_and_expiry_give_back_awaiting_units_and_converted_locks(
    engine: StockEngine, clock: ManualClock
) -> None:
    await sale_ready(engine, "X", on_hand=0, incoming=4, limit=8)
    await engine.incoming.put(ref="po-2", sku="X", location="north", qty=4, expected_at=T2)
    await engine.reserve(order_id="conv", lines=[LineRequest("X", 3)])
    await engine.reserve(order_id="wait", lines=[LineRequest("X", 2)], ttl_seconds=60)
    await engine.incoming.receive("po-X")
    assert await level(engine, "X") == (4, 3)
    assert await awaiting(engine, "X") == 2

    await engine.cancel("conv")
    clock.advance(61)
    await engine.expire_due()

    assert await level(engine, "X") == (4, 0)
    assert await awaiting(engine, "X") == 0
    assert (await engine.get_reservation("wait")).status == "expired"


async def test_incoming_records_answer_by_ref_and_refuse_conflicting_changes(
    engine: StockEngine,
) -> None:
    created = await engine.incoming.put(ref="po", sku="X", location="north", qty=5, expected_at=T1)
    same = await engine.incoming.put(ref="po", sku="X", location="north", qty=5, expected_at=T1)
    moved = await engine.incoming.put(ref="po", sku="X", location="north", qty=5, expected_at=T2)

    assert (created.created, same.created, same.replayed, moved.created) == (
        True,
        False,
        True,
        False,
    )
    assert (await engine.incoming.get("po")).expected_at == T2
    with pytest.raises(InvalidState):
        await engine.incoming.put(ref="po", sku="Y", location="north", qty=5, expected_at=T1)
    with pytest.raises(InvalidState):
        await engine.incoming.put(ref="po", sku="X", location="south", qty=5, expected_at=T1)
    with pytest.raises(NotFound):
        await engine.incoming.receive("nope")

    got = await engine.incoming.receive("po", qty=4)
    again = await engine.incoming.receive("po", qty=4)
    assert (again.replayed, again.received_qty) == (True, 4)
    with pytest.raises(InvalidState):
        await engine.incoming.cancel("po")
    with pytest.raises(InvalidState):
        await engine.incoming.put(ref="po", sku="X", location="north", qty=5, expected_at=T1)
    assert got.received_qty == 4
    assert await level(engine, "X") == (4, 0)
    assert (await engine.incoming.get("po")).status == "received"


async def test_availability_promises_incoming_units_by_date_net_of_pre_orders(
    engine: StockEngine,
) -> None:
    await sale_ready(engine, "X", on_hand=2, incoming=3, limit=5)
    await engine.incoming.put(ref="po-2", sku="X", location="south", qty=4, expected_at=T2)
    plain = await engine.availability("Y")

    await engine.reserve(order_id="o1", lines=[LineRequest("X", 3, "north")])

    a = await engine.availability("X")
    assert (a.available, a.locations) == (0, {"north": 0, "south": 0})
    assert a.available_to_promise == (("2027-01-15", 2), ("2027-01-22", 6))
    assert plain.available_to_promise == ()


async def test_concurrent_pre_orders_never_take_more_than_limit_and_incoming(
    engine: StockEngine,
) -> None:
    a, b = skus_in_distinct_groups(engine, 2)
    for sku in (a, b):
        await sale_ready(engine, sku, on_hand=5, incoming=8, limit=6)

    async def attempt(i: int) -> int:
        try:
            r = await engine.reserve(order_id=f"o{i}", lines=[LineRequest(a, 1), LineRequest(b, 1)])
        except InsufficientStock:
            return 0
        return sum(ln.qty for ln in r.lines if ln.sku == a)

    sold = sum(await asyncio.gather(*(attempt(i) for i in range(30))))

    assert sold == 11
    for sku in (a, b):
        assert await level(engine, sku) == (5, 5)
        assert await awaiting(engine, sku) == 6
        await engine.incoming.receive(f"po-{sku}")
        assert await level(engine, sku) == (13, 11)
        assert await awaiting(engine, sku) == 0
