"""Invariants 2, 6 and 7: retries replay, bad input is refused and changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
    NotReady,
    ValidationError,
)
from inventory_cache.models import LineRequest


async def snapshot(engine: StockEngine) -> dict[bytes, Any]:
    """Every key of this test's prefix, with its content (streams by length)."""
    client = engine.client
    out: dict[bytes, Any] = {}
    async for key in client.scan_iter(match=f"{engine.keys.prefix}:*"):
        kind = (await client.type(key)).decode()
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "string":
            out[key] = await client.get(key)
        elif kind == "stream":
            out[key] = await client.xlen(key)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
    return out


@pytest.fixture
async def stocked(engine: StockEngine) -> StockEngine:
    await engine.inbound(ref="po", sku="X", location="north", qty=10)
    await engine.inbound(ref="po", sku="B", location="north", qty=10)
    return engine


RETRIES: dict[str, Callable[[StockEngine], Awaitable[Any]]] = {
    "inbound": lambda e: e.inbound(ref="r1", sku="X", location="north", qty=3),
    "adjust": lambda e: e.adjust(ref="r1", sku="X", location="north", reason="damage", delta=-1),
    "count": lambda e: e.adjust(ref="r2", sku="X", location="north", reason="count", set_on_hand=7),
    "return": lambda e: e.record_return(ref="r1", sku="X", location="north", qty=1, restock=True),
    "pos": lambda e: e.pos_event(event_id="p1", type="sale", sku="X", location="north", qty=1),
    "reserve": lambda e: e.reserve(order_id="o1", lines=[LineRequest("X", 2)]),
    "transfer": lambda e: e.request_transfer(
        transfer_id="t1", sku="B", from_location="north", to_location="south", qty=2
    ),
}


@pytest.mark.parametrize("op", sorted(RETRIES))
async def test_retry_with_same_id_replays_and_changes_nothing(
    stocked: StockEngine, op: str
) -> None:
    first = await RETRIES[op](stocked)
    before = await snapshot(stocked)

    again = await RETRIES[op](stocked)

    assert again == dataclasses.replace(first, replayed=True)
    assert await snapshot(stocked) == before


MISMATCHES: dict[
    str, tuple[Callable[[StockEngine], Awaitable[Any]], Callable[[StockEngine], Awaitable[Any]]]
] = {
    "inbound": (
        lambda e: e.inbound(ref="r1", sku="X", location="north", qty=3),
        lambda e: e.inbound(ref="r1", sku="X", location="north", qty=4),
    ),
    "reserve": (
        lambda e: e.reserve(order_id="o1", lines=[LineRequest("X", 2)]),
        lambda e: e.reserve(order_id="o1", lines=[LineRequest("X", 3)]),
    ),
    "transfer": (
        lambda e: e.request_transfer(
            transfer_id="t1", sku="B", from_location="north", to_location="south", qty=2
        ),
        lambda e: e.request_transfer(
            transfer_id="t1", sku="B", from_location="north", to_location="east", qty=2
        ),
    ),
    "pos": (
        lambda e: e.pos_event(event_id="p1", type="sale", sku="X", location="north", qty=1),
        lambda e: e.pos_event(event_id="p1", type="return", sku="X", location="north", qty=1),
    ),
}


@pytest.mark.parametrize("op", sorted(MISMATCHES))
async def test_same_id_with_another_body_is_refused(stocked: StockEngine, op: str) -> None:
    first, other = MISMATCHES[op]
    await first(stocked)
    before = await snapshot(stocked)

    with pytest.raises(IdempotencyMismatch):
        await other(stocked)

    assert await snapshot(stocked) == before


BAD: dict[str, Callable[[StockEngine], Awaitable[Any]]] = {
    "zero qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty=0),
    "negative qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty=-1),
    "fractional qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty=1.5),  # type: ignore[arg-type]
    "string qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty="3"),  # type: ignore[arg-type]
    "bool qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty=True),
    "huge qty": lambda e: e.inbound(ref="r", sku="X", location="north", qty=1_000_001),
    "bad sku": lambda e: e.inbound(ref="r", sku="X Y", location="north", qty=1),
    "long sku": lambda e: e.inbound(ref="r", sku="X" * 65, location="north", qty=1),
    "empty ref": lambda e: e.inbound(ref="", sku="X", location="north", qty=1),
    "zero delta": lambda e: e.adjust(ref="r", sku="X", location="north", reason="damage", delta=0),
    "bad reason": lambda e: e.adjust(ref="r", sku="X", location="north", reason="theft", delta=-1),
    "delta and set": lambda e: e.adjust(
        ref="r", sku="X", location="north", reason="count", delta=1, set_on_hand=3
    ),
    "no lines": lambda e: e.reserve(order_id="o", lines=[]),
    "101 lines": lambda e: e.reserve(
        order_id="o", lines=[LineRequest(f"s{i}", 1) for i in range(101)]
    ),
    "zero ttl": lambda e: e.reserve(order_id="o", lines=[LineRequest("X", 1)], ttl_seconds=0),
    "bad order id": lambda e: e.reserve(order_id="o/1", lines=[LineRequest("X", 1)]),
    "same locations": lambda e: e.request_transfer(
        transfer_id="t", sku="B", from_location="north", to_location="north", qty=1
    ),
    "bad pos type": lambda e: e.pos_event(
        event_id="p", type="steal", sku="X", location="north", qty=1
    ),
    "201 skus": lambda e: e.availability_many([f"s{i}" for i in range(201)]),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_input_raises_validation_error_and_changes_nothing(
    stocked: StockEngine, case: str
) -> None:
    before = await snapshot(stocked)

    with pytest.raises(ValidationError):
        await BAD[case](stocked)

    assert await snapshot(stocked) == before


async def test_refusals_change_nothing(stocked: StockEngine) -> None:
    await stocked.reserve(order_id="shipped", lines=[LineRequest("X", 1)])
    await stocked.ship("shipped")
    before = await snapshot(stocked)

    with pytest.raises(InsufficientStock):
        await stocked.reserve(order_id="big", lines=[LineRequest("X", 100)])
    with pytest.raises(InvalidState):
        await stocked.cancel("shipped")
    with pytest.raises(NotFound):
        await stocked.ship("unknown")
    with pytest.raises(InvalidState):
        await stocked.adjust(ref="a", sku="X", location="north", reason="loss", delta=-100)
    with pytest.raises(InvalidState):
        await stocked.adjust(
            ref="c", sku="X", location="north", reason="count", set_on_hand=3, expected_on_hand=99
        )

    assert await snapshot(stocked) == before


async def test_count_with_expected_value_is_a_compare_and_set(stocked: StockEngine) -> None:
    level = await stocked.adjust(
        ref="c", sku="X", location="north", reason="count", set_on_hand=4, expected_on_hand=10
    )
    assert (level.on_hand, level.available) == (4, 4)


# On a Redis of its own: SCRIPT FLUSH on the shared server reaches every test running there.
@pytest.mark.parametrize(
    "backend",
    ["own-redis", "fakeredis", pytest.param("cluster", marks=pytest.mark.cluster)],
    indirect=True,
)
async def test_script_flush_between_calls_is_recovered(stocked: StockEngine) -> None:
    await stocked.client.script_flush()

    level = await stocked.inbound(ref="after-flush", sku="X", location="north", qty=1)
    res = await stocked.reserve(order_id="o", lines=[LineRequest("X", 1)])

    assert level.on_hand == 11
    assert res.status == "active"


async def test_flushed_group_refuses_writes_and_reads(stocked: StockEngine) -> None:
    g = stocked.keys.group_of("X")
    await stocked.client.delete(stocked.keys.ready(g))

    with pytest.raises(NotReady):
        await stocked.inbound(ref="n", sku="X", location="north", qty=1)
    with pytest.raises(NotReady):
        await stocked.availability("X")
    assert await stocked.check_ready() is False
