"""Per-customer limits are checked and counted in the script that locks the stock, so they
hold under any concurrency, on every backend (one Redis, fakeredis, the cluster): a flash
sale never lets a customer past the limit, cancel and expiry give the units back, ship keeps
them, and a refused order (by its limit or another group's stock) counts nothing. Every
test runs on both reserve paths: the one script (`reserve_order-2.lua`) and a script per
group (`reserve-4.lua`, as on a cluster for an order that spans groups)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import (
    InsufficientStock,
    InventoryError,
    LimitExceeded,
    NotFound,
    ValidationError,
)
from inventory_cache.feed import FeedEvent
from inventory_cache.models import Component, CustomerLimit, LineRequest
from tests.support.clock import ManualClock
from tests.support.redis_state import skus_in_distinct_groups
from tests.support.services import make_settings


@pytest.fixture(params=["one script", "script per group"])
async def engine(
    request: pytest.FixtureRequest, backend: Any, prefix: str, clock: ManualClock
) -> StockEngine:
    eng = StockEngine(
        backend, make_settings(prefix), clock=clock, one_script=request.param == "one script"
    )
    await eng.mark_ready()
    return eng


async def locked(engine: StockEngine, sku: str) -> int:
    return sum(lv.locked for lv in (await engine.stock(sku)).locations.values())


async def test_flash_sale_sells_every_unit_and_no_customer_more_than_the_limit(
    engine: StockEngine,
) -> None:
    customers, tries, units = 1000, 3, 1500
    if type(engine.client).__module__.startswith("fakeredis"):
        # fakeredis runs Lua in Python: a fifth of the sale, same proportions (2 s, not 10).
        customers, units = 200, 300
    await engine.inbound(ref="po", sku="drop", location="north", qty=units)
    await engine.set_limit(sku="drop", per_customer=2)

    async def attempt(c: int, k: int) -> tuple[int, str, str]:
        order_id = f"o-{c}-{k}"
        try:
            await engine.reserve(
                order_id=order_id, lines=[LineRequest("drop", 1)], customer_id=f"c{c}"
            )
        except InventoryError as exc:
            return c, order_id, exc.code
        return c, order_id, "ok"

    # Every customer's three tries are in flight at once, interleaved with everyone else's.
    outcomes = await asyncio.gather(
        *(attempt(c, k) for k in range(tries) for c in range(customers))
    )

    held = Counter(c for c, _, outcome in outcomes if outcome == "ok")
    assert max(held.values()) == 2
    assert sum(held.values()) == min(2 * customers, units) == await locked(engine, "drop")
    assert {o for _, _, o in outcomes} == {"ok", "limit_exceeded", "insufficient_stock"}
    full = next(c for c, n in held.items() if n == 2)
    assert await engine.customer_holds("drop", f"c{full}") == 2
    with pytest.raises(LimitExceeded) as refused:
        await engine.reserve(
            order_id=f"again-{full}", lines=[LineRequest("drop", 1)], customer_id=f"c{full}"
        )
    assert refused.value.lines == [{"sku": "drop", "requested": 1, "allowed": 0}]

    placed = [order for c, order, o in outcomes if c == full and o == "ok"]
    await engine.cancel(placed[0])

    assert await engine.customer_holds("drop", f"c{full}") == 1
    again = await engine.reserve(
        order_id=f"again-{full}", lines=[LineRequest("drop", 1)], customer_id=f"c{full}"
    )
    assert again.status == "active"
    assert await engine.customer_holds("drop", f"c{full}") == 2


async def test_a_limited_sku_needs_a_customer_id_and_nothing_is_locked_without_one(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.inbound(ref="po", sku="B", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2)

    with pytest.raises(ValidationError) as refused:
        await engine.reserve(order_id="o1", lines=[LineRequest("A", 1), LineRequest("B", 1)])

    assert refused.value.extra["field"] == "customer_id"
    assert (await locked(engine, "A"), await locked(engine, "B")) == (0, 0)
    with pytest.raises(NotFound):
        await engine.get_reservation("o1")
    # A SKU without a limit needs none, and a customer id on it counts nothing.
    assert (await engine.reserve(order_id="o2", lines=[LineRequest("B", 1)])).status == "active"
    await engine.reserve(order_id="o3", lines=[LineRequest("B", 5)], customer_id="c1")
    assert await engine.customer_holds("B", "c1") == 0


async def test_over_the_limit_says_what_the_customer_may_still_take_and_locks_nothing(
    engine: StockEngine,
) -> None:
    a, b = skus_in_distinct_groups(engine, 2)
    await engine.inbound(ref="po", sku=a, location="north", qty=10)
    await engine.inbound(ref="po", sku=b, location="north", qty=10)
    await engine.set_limit(sku=a, per_customer=3)
    await engine.reserve(order_id="o1", lines=[LineRequest(a, 2)], customer_id="c1")

    with pytest.raises(LimitExceeded) as refused:
        await engine.reserve(
            order_id="o2",
            lines=[LineRequest(b, 4), LineRequest(a, 1, "north"), LineRequest(a, 1)],
            customer_id="c1",
        )

    assert refused.value.code == "limit_exceeded" and refused.value.status == 409
    assert refused.value.lines == [{"sku": a, "requested": 2, "allowed": 1}]
    assert (await locked(engine, a), await locked(engine, b)) == (2, 0)
    assert await engine.customer_holds(a, "c1") == 2
    # Another customer is not held back by c1's count.
    await engine.reserve(order_id="o3", lines=[LineRequest(a, 3)], customer_id="c2")
    assert await engine.customer_holds(a, "c2") == 3


async def test_a_bundle_line_counts_against_the_limits_of_its_components(
    engine: StockEngine,
) -> None:
    phone, case = skus_in_distinct_groups(engine, 2)
    for sku in (phone, case):
        await engine.inbound(ref="po", sku=sku, location="north", qty=10)
    await engine.put_bundle("kit", [Component(phone, 1), Component(case, 2)])
    await engine.set_limit(sku=case, per_customer=3)

    kit = await engine.reserve(order_id="o1", lines=[LineRequest("kit", 1)], customer_id="c1")
    with pytest.raises(LimitExceeded) as refused:
        await engine.reserve(
            order_id="o2", lines=[LineRequest("kit", 1), LineRequest(case, 1)], customer_id="c1"
        )

    assert [b.sku for b in kit.bundles] == ["kit"]
    assert refused.value.lines == [{"sku": case, "requested": 3, "allowed": 1}]
    assert (await engine.customer_holds(case, "c1"), await locked(engine, case)) == (2, 2)
    await engine.cancel("o1")
    assert (await engine.customer_holds(case, "c1"), await locked(engine, case)) == (0, 0)


async def test_an_order_refused_in_another_group_gives_its_counted_units_back(
    engine: StockEngine,
) -> None:
    a, b = skus_in_distinct_groups(engine, 2)
    await engine.inbound(ref="po", sku=a, location="north", qty=10)
    await engine.inbound(ref="po", sku=b, location="north", qty=1)
    await engine.set_limit(sku=a, per_customer=2)

    with pytest.raises(InsufficientStock):
        await engine.reserve(
            order_id="o1", lines=[LineRequest(a, 2), LineRequest(b, 5)], customer_id="c1"
        )

    assert await engine.customer_holds(a, "c1") == 0
    assert await locked(engine, a) == 0
    retry = await engine.reserve(
        order_id="o1", lines=[LineRequest(a, 2), LineRequest(b, 1)], customer_id="c1"
    )
    assert retry.status == "active" and await engine.customer_holds(a, "c1") == 2


async def test_a_retry_replays_and_counts_once_and_another_customer_is_a_mismatch(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2)
    first = await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")

    again = await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")

    assert again.replayed and again.lines == first.lines
    assert await engine.customer_holds("A", "c1") == 2
    with pytest.raises(InventoryError) as other:
        await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c2")
    assert other.value.code == "idempotency_mismatch"


async def test_ship_keeps_the_units_counted_cancel_and_expiry_give_them_back(
    engine: StockEngine, clock: ManualClock
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=3)
    await engine.reserve(order_id="shipped", lines=[LineRequest("A", 1)], customer_id="c1")
    await engine.reserve(order_id="cancelled", lines=[LineRequest("A", 1)], customer_id="c1")
    await engine.reserve(
        order_id="lapsed", lines=[LineRequest("A", 1)], customer_id="c1", ttl_seconds=60
    )
    assert await engine.customer_holds("A", "c1") == 3

    await engine.ship("shipped")
    await engine.cancel("cancelled")
    assert await engine.customer_holds("A", "c1") == 2
    clock.advance(61)
    assert await engine.expire_due() == 1

    assert await engine.customer_holds("A", "c1") == 1
    await engine.cancel("cancelled")  # a replay gives nothing back twice
    assert await engine.customer_holds("A", "c1") == 1


async def test_a_rolling_window_lets_the_customer_buy_again_once_it_has_passed(
    engine: StockEngine, clock: ManualClock
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2, window_seconds=3600)
    await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")
    await engine.ship("o1")
    with pytest.raises(LimitExceeded):
        await engine.reserve(order_id="o2", lines=[LineRequest("A", 1)], customer_id="c1")

    clock.advance(3601)

    assert await engine.customer_holds("A", "c1") == 0
    await engine.reserve(order_id="o2", lines=[LineRequest("A", 2)], customer_id="c1")
    assert await engine.customer_holds("A", "c1") == 2
    count = engine.keys.customer_count("A", "c1")
    # The entry that left the window was trimmed: the count holds o2 alone (and its meta).
    assert [m for m in await engine.client.zrange(count, 0, -1) if b":" in m] == [b"2:o2"]
    assert await engine.client.pttl(count) > 0


async def test_changing_a_limit_keeps_the_counts_removing_it_forgets_them(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2)
    await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")

    await engine.set_limit(sku="A", per_customer=3)
    assert await engine.get_limit("A") == CustomerLimit("A", 3, None)
    assert await engine.customer_holds("A", "c1") == 2
    with pytest.raises(LimitExceeded):
        await engine.reserve(order_id="o2", lines=[LineRequest("A", 2)], customer_id="c1")

    await engine.delete_limit("A")
    with pytest.raises(NotFound):
        await engine.get_limit("A")
    with pytest.raises(NotFound):
        await engine.delete_limit("A")
    await engine.set_limit(sku="A", per_customer=2, window_seconds=60)

    assert await engine.get_limit("A") == CustomerLimit("A", 2, 60)
    assert await engine.customer_holds("A", "c1") == 0
    await engine.reserve(order_id="o3", lines=[LineRequest("A", 2)], customer_id="c1")
    await engine.cancel("o1")  # counted under the removed limit: nothing to give back now
    assert await engine.customer_holds("A", "c1") == 2


@pytest.mark.parametrize(
    ("per_customer", "window", "field"),
    [
        (0, None, "per_customer"),
        (-1, None, "per_customer"),
        (1_000_001, None, "per_customer"),
        ("2", None, "per_customer"),
        (2, 0, "window_seconds"),
        (2, 366 * 86400 + 1, "window_seconds"),
        (2, 1.5, "window_seconds"),
    ],
)
async def test_a_bad_limit_is_refused_and_changes_nothing(
    engine: StockEngine, per_customer: object, window: object, field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        await engine.set_limit(sku="A", per_customer=per_customer, window_seconds=window)  # type: ignore[arg-type]

    assert refused.value.extra["field"] == field
    with pytest.raises(NotFound):
        await engine.get_limit("A")


async def test_a_bad_customer_id_is_refused(engine: StockEngine) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    with pytest.raises(ValidationError) as refused:
        await engine.reserve(order_id="o1", lines=[LineRequest("A", 1)], customer_id="c 1\n")
    assert refused.value.extra["field"] == "customer_id"
    assert await locked(engine, "A") == 0


async def test_the_feed_shows_limit_changes_and_the_units_an_order_counted(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2, window_seconds=60)
    await engine.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")
    await engine.cancel("o1")

    g = engine.keys.group_of("A")
    entries = await engine.client.xrange(engine.keys.events(g))
    bodies = [FeedEvent.from_entry(g, eid, raw).body for eid, raw in entries]

    limit, reserve, cancel = bodies[1:]
    assert (limit["type"], limit["sku"], limit["per_customer"], limit["window_seconds"]) == (
        "limit",
        "A",
        2,
        60,
    )
    assert limit["rows"] == []
    for ev in (reserve, cancel):
        assert (ev["customer_id"], ev["counted"]) == ("c1", [{"sku": "A", "qty": 2}])


async def test_a_part_whose_index_was_lost_gives_its_units_back_when_it_expires(
    engine: StockEngine, clock: ManualClock
) -> None:
    """An attempt that crashed before its order index survived: the sweep expires the part
    on its own, and reads the customer from the part."""
    await engine.inbound(ref="po", sku="A", location="north", qty=10)
    await engine.set_limit(sku="A", per_customer=2)
    await engine.reserve(
        order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1", ttl_seconds=60
    )
    await engine.client.delete(engine.keys.order_index("o1"))

    clock.advance(61)

    assert await engine.expire_due() == 1
    assert await engine.customer_holds("A", "c1") == 0
    assert await locked(engine, "A") == 0
