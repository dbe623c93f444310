"""A reservation of up to `one_script_max_lines` lines is one script call wherever the
order's keys can meet in one script: on a single Redis always, on a cluster when the order
id and its lines share a slot group.
Its effect is the multi-script path's: the same parts, index and events."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from inventory_cache.engine import StockEngine, _is_cluster
from inventory_cache.errors import InsufficientStock, LimitExceeded, NotFound
from inventory_cache.models import LineRequest
from inventory_cache.script_calls import Call
from tests.support.redis_state import skus_in_distinct_groups, snapshot_prefix

MULTI_SCRIPT = ["index_open", "reserve", "reserve", "reserve", "index_commit"]
# Event fields that name the order or its attempt, or carry levels and versions.
PER_ORDER = {b"op", b"ref", b"order", b"tok", b"fp", b"ofp", b"rows"}


def scripts_sent(engine: StockEngine) -> list[str]:
    """The names of the scripts `engine` runs from now on, in order."""
    sent: list[str] = []
    run, run_many = engine.run, engine.run_many

    async def one(call: Call) -> Any:
        sent.append(call.script)
        return await run(call)

    async def many(calls: Sequence[Call]) -> list[Any]:
        sent.extend(call.script for call in calls)
        return await run_many(calls)

    engine.run = one  # type: ignore[method-assign]
    engine.run_many = many  # type: ignore[method-assign]
    return sent


def order_id_in_group(engine: StockEngine, group: int, *, inside: bool) -> str:
    return next(
        f"o{i}" for i in itertools.count() if (engine.keys.group_of(f"o{i}") == group) == inside
    )


async def stocked_skus(engine: StockEngine, n: int) -> list[str]:
    """`n` SKUs in distinct slot groups, 5 units of each at `north`."""
    skus = skus_in_distinct_groups(engine, n)
    for sku in skus:
        await engine.inbound(ref="po", sku=sku, location="north", qty=5)
    return skus


async def events_of(engine: StockEngine, sku: str, order_id: str) -> list[dict[bytes, bytes]]:
    stream = engine.keys.events(engine.keys.group_of(sku))
    entries = await engine.client.xrange(stream)
    return [f for _, f in entries if f.get(b"order") == order_id.encode()]


async def test_an_order_over_three_groups_is_one_call_on_a_single_redis_with_the_same_events(
    engine: StockEngine,
) -> None:
    skus = await stocked_skus(engine, 3)
    lines = [LineRequest(s, 1) for s in skus]
    multi = StockEngine(engine.client, engine.settings, clock=engine.now, one_script=False)
    await multi.reserve(order_id="by-steps", lines=lines)
    sent = scripts_sent(engine)

    res = await engine.reserve(order_id="at-once", lines=lines)

    assert sent == (MULTI_SCRIPT if _is_cluster(engine.client) else ["reserve_order"])
    assert res.status == "active" and len(res.lines) == 3
    at_once = await engine.client.hgetall(engine.keys.order_index("at-once"))
    by_steps = await engine.client.hgetall(engine.keys.order_index("by-steps"))
    assert sorted(at_once) == sorted(by_steps)  # committed: no `ph`
    assert at_once[b"body"] == by_steps[b"body"]
    for sku in skus:
        (one,) = await events_of(engine, sku, "at-once")
        (other,) = await events_of(engine, sku, "by-steps")
        assert list(one) == list(other)  # the same fields, in the same order
        assert {k: v for k, v in one.items() if k not in PER_ORDER} == {
            k: v for k, v in other.items() if k not in PER_ORDER
        }
        assert (await engine.stock(sku)).locations["north"].locked == 2


async def test_a_refused_order_on_a_single_redis_writes_nothing_not_even_a_release(
    engine: StockEngine,
) -> None:
    if _is_cluster(engine.client):
        pytest.skip("an order spanning groups on a cluster locks and releases group by group")
    a, b = skus_in_distinct_groups(engine, 2)
    await engine.inbound(ref="po", sku=a, location="north", qty=5)
    await engine.inbound(ref="po", sku=b, location="north", qty=1)
    before = await snapshot_prefix(engine.client, engine.keys.prefix)

    with pytest.raises(InsufficientStock) as exc:
        await engine.reserve(order_id="o", lines=[LineRequest(a, 2), LineRequest(b, 2)])

    assert exc.value.lines == [{"sku": b, "requested": 2, "available": 1}]
    assert await snapshot_prefix(engine.client, engine.keys.prefix) == before


async def test_a_limited_order_over_three_groups_counts_as_the_multi_script_path_does(
    engine: StockEngine,
) -> None:
    skus = await stocked_skus(engine, 3)
    for sku in skus[:2]:
        await engine.set_limit(sku=sku, per_customer=2)
    lines = [LineRequest(s, 1) for s in skus]
    multi = StockEngine(engine.client, engine.settings, clock=engine.now, one_script=False)
    await multi.reserve(order_id="by-steps", lines=lines, customer_id="c1")
    sent = scripts_sent(engine)

    await engine.reserve(order_id="at-once", lines=lines, customer_id="c2")

    assert sent == (MULTI_SCRIPT if _is_cluster(engine.client) else ["reserve_order"])
    for sku in skus:
        (one,) = await events_of(engine, sku, "at-once")
        (other,) = await events_of(engine, sku, "by-steps")
        assert list(one) == list(other)
        limited = sku in skus[:2]
        assert one.get(b"cu") == (b"c2" if limited else None)
        assert one.get(b"cnt") == other.get(b"cnt")
        part = await engine.client.hgetall(engine.keys.part(engine.keys.group_of(sku), "at-once"))
        assert (part.get(b"cu"), part.get(b"cnt")) == (one.get(b"cu"), one.get(b"cnt"))
    assert [await engine.customer_holds(s, "c2") for s in skus] == [1, 1, 0]
    await engine.cancel("at-once")
    assert [await engine.customer_holds(s, "c2") for s in skus] == [0, 0, 0]
    assert [await engine.customer_holds(s, "c1") for s in skus] == [1, 1, 0]


async def test_limit_refusals_of_every_group_come_back_together_and_nothing_is_written(
    engine: StockEngine,
) -> None:
    if _is_cluster(engine.client):
        pytest.skip("an order spanning groups on a cluster locks and releases group by group")
    a, b, c = skus_in_distinct_groups(engine, 3)
    for sku in (a, b):
        await engine.inbound(ref="po", sku=sku, location="north", qty=5)
        await engine.set_limit(sku=sku, per_customer=1)
    await engine.inbound(ref="po", sku=c, location="north", qty=1)
    before = await snapshot_prefix(engine.client, engine.keys.prefix)

    with pytest.raises(LimitExceeded) as exc:
        await engine.reserve(
            order_id="o",
            lines=[LineRequest(a, 2), LineRequest(b, 3), LineRequest(c, 2)],
            customer_id="c1",
        )

    assert exc.value.lines == [
        {"sku": a, "requested": 2, "allowed": 1},
        {"sku": b, "requested": 3, "allowed": 1},
    ]
    assert await snapshot_prefix(engine.client, engine.keys.prefix) == before


async def test_a_one_group_order_is_one_call_on_a_cluster_when_its_id_shares_the_group(
    engine: StockEngine,
) -> None:
    await engine.inbound(ref="po", sku="X", location="north", qty=5)
    g = engine.keys.group_of("X")
    inside = order_id_in_group(engine, g, inside=True)
    outside = order_id_in_group(engine, g, inside=False)
    sent = scripts_sent(engine)

    await engine.reserve(order_id=inside, lines=[LineRequest("X", 1)])
    first = list(sent)
    await engine.reserve(order_id=outside, lines=[LineRequest("X", 1)])

    assert first == ["reserve_order"]
    steps = ["index_open", "reserve", "index_commit"] if _is_cluster(engine.client) else []
    assert sent[1:] == (steps or ["reserve_order"])
    for order_id in (inside, outside):
        assert (await engine.get_reservation(order_id)).status == "active"
        assert (await engine.cancel(order_id)).status == "cancelled"
    assert (await engine.stock("X")).locations["north"].locked == 0
    with pytest.raises(NotFound):
        await engine.get_reservation("never")


async def test_an_order_over_the_one_script_line_limit_is_reserved_group_by_group(
    engine: StockEngine,
) -> None:
    """Redis runs one script at a time: a script locking many lines would hold every
    other client's call for milliseconds, so a larger order takes the small-script path."""
    settings = engine.settings.model_copy(update={"one_script_max_lines": 2})
    limited = StockEngine(engine.client, settings, clock=engine.now)
    skus = await stocked_skus(engine, 3)
    sent = scripts_sent(limited)

    small = await limited.reserve(order_id="two-lines", lines=[LineRequest(s, 1) for s in skus[:2]])
    at_two = list(sent)
    large = await limited.reserve(order_id="three-lines", lines=[LineRequest(s, 1) for s in skus])

    assert at_two == (
        MULTI_SCRIPT[:3] + MULTI_SCRIPT[4:] if _is_cluster(engine.client) else ["reserve_order"]
    )
    assert sent[len(at_two) :] == MULTI_SCRIPT
    assert (small.status, large.status) == ("active", "active")
    assert [(await engine.stock(s)).locations["north"].locked for s in skus] == [2, 2, 1]


async def test_an_order_whose_index_was_lost_replays_its_parts_and_marks_no_preorders(
    engine: StockEngine,
) -> None:
    skus = await stocked_skus(engine, 2)
    lines = [LineRequest(sku, 1, "north") for sku in skus]
    first = await engine.reserve(order_id="lost-index", lines=lines)
    await engine.client.delete(engine.keys.order_index("lost-index"))

    again = await engine.reserve(order_id="lost-index", lines=lines)

    assert again.lines == first.lines
    index = await engine.client.hgetall(engine.keys.order_index("lost-index"))
    assert index[b"st"] == b"active"
    assert b"pre" not in index  # no part of it holds pre-order lines
    for sku in skus:  # each unit locked once, not again by the replay
        assert (await engine.availability(sku)).available == 4
