"""The live feed (issue 6): content, order, filters, resume without gap or repeat, slow readers.

Runs on real Redis and on fakeredis; every wait is bounded, so a feed that stalls fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import ValidationError
from inventory_cache.feed import (
    ALL_GROUPS,
    MAX_SEQ,
    FeedEvent,
    FeedHub,
    Filter,
    Gap,
    KeepAlive,
    Position,
    Tick,
    follow,
    read_range,
)
from inventory_cache.models import LineRequest

Stream = AsyncIterator[FeedEvent | KeepAlive | Gap | Tick]


@pytest.fixture
async def hub(engine: StockEngine) -> FeedHub:
    return FeedHub(engine.client, engine.keys, block_ms=200)


WAIT_S = 3.0


async def next_event(stream: Stream) -> FeedEvent:
    async def get() -> FeedEvent:
        async for item in stream:
            if isinstance(item, FeedEvent):
                return item
        raise AssertionError("feed ended")

    return await asyncio.wait_for(get(), WAIT_S)


async def events(stream: Stream, n: int) -> list[FeedEvent]:
    return [await next_event(stream) for _ in range(n)]


@contextlib.asynccontextmanager
async def opened(
    hub: FeedHub,
    flt: Filter = Filter(),
    after: Position | None = None,
    keepalive_seconds: float = 15.0,
) -> AsyncIterator[tuple[Stream, Position]]:
    """A reader that is subscribed (its first keep-alive received) before the test acts."""
    stream = follow(hub, flt, after, keepalive_seconds=keepalive_seconds)
    first = await asyncio.wait_for(anext(stream), WAIT_S)
    assert isinstance(first, KeepAlive)
    try:
        yield stream, first.position
    finally:
        await stream.aclose()


async def test_reservation_is_seen_with_its_content_after_the_inbound(
    engine: StockEngine, hub: FeedHub
) -> None:
    async with opened(hub) as (stream, _):
        await engine.inbound(ref="po-1", sku="phoneA", location="north", qty=10)
        await engine.reserve(order_id="o-1", lines=[LineRequest("phoneA", 2)])

        inbound, reserve = await events(stream, 2)

    assert inbound.body["type"] == "inbound"
    assert reserve.body["type"] == "reserve"
    assert inbound.position < reserve.position
    assert reserve.body["order_id"] == "o-1"
    assert reserve.body["status"] == "active"
    assert reserve.body["lines"] == [{"sku": "phoneA", "location": "north", "qty": 2}]
    assert reserve.body["rows"] == [
        {
            "sku": "phoneA",
            "location": "north",
            "delta_on_hand": 0,
            "delta_locked": 2,
            "on_hand": 10,
            "locked": 2,
            "safety_stock": 0,
            "available": 8,
        }
    ]
    assert reserve.body["id"] == reserve.position.encode()
    assert "fp" not in reserve.body and "tok" not in reserve.body


async def test_events_of_many_groups_arrive_once_each_in_position_order(
    engine: StockEngine, hub: FeedHub
) -> None:
    skus = [f"sku-{i}" for i in range(12)]
    assert len({engine.keys.group_of(s) for s in skus}) > 1
    async with opened(hub) as (stream, _):
        for round_ in range(3):
            await asyncio.gather(
                *(engine.inbound(ref=f"po-{round_}", sku=s, location="north", qty=1) for s in skus)
            )
        got = await events(stream, 36)

    positions = [e.position for e in got]
    assert positions == sorted(set(positions))
    for sku in skus:
        mine = [e.body["rows"][0]["on_hand"] for e in got if e.body["rows"][0]["sku"] == sku]
        assert mine == [1, 2, 3]


async def test_resume_from_last_event_id_has_no_gap_and_no_repeat(
    engine: StockEngine, hub: FeedHub
) -> None:
    skus = [f"r-{i}" for i in range(6)]
    async with opened(hub) as (stream, _):
        for s in skus:
            await engine.inbound(ref="po-a", sku=s, location="north", qty=5)
        seen = await events(stream, 3)
    last_id = seen[-1].position.encode()
    # While disconnected: the rest of the first wave and a second wave.
    for s in skus:
        await engine.inbound(ref="po-b", sku=s, location="north", qty=5)

    async with opened(hub, after=Position.parse(last_id)) as (stream, start):
        assert start == seen[-1].position
        resumed = await events(stream, 9)
        await engine.reserve(order_id="o-live", lines=[LineRequest("r-0", 1)])
        live = await next_event(stream)

    ops = [(e.body["rows"][0]["sku"], e.body["ref"]) for e in seen + resumed]
    assert len(ops) == len(set(ops)) == 12
    assert sorted(ops) == sorted((s, ref) for s in skus for ref in ("po-a", "po-b"))
    assert [e.position for e in resumed] == sorted(e.position for e in resumed)
    assert resumed[0].position > seen[-1].position
    assert live.body["order_id"] == "o-live"


async def test_a_resume_into_trimmed_history_is_told_before_the_rest(
    engine: StockEngine, hub: FeedHub
) -> None:
    async with opened(hub) as (stream, _):
        for n in range(3):
            await engine.inbound(ref=f"po-{n}", sku="X", location="north", qty=1)
        first, _second, third = await events(stream, 3)
    g = engine.keys.group_of("X")
    stream_id = f"{third.position.ms}-{third.position.seq}"
    await engine.client.xtrim(engine.keys.events(g), minid=stream_id, approximate=False)

    async with opened(hub, after=first.position) as (lost, _):
        gap = await asyncio.wait_for(anext(lost), WAIT_S)
        rest = await next_event(lost)
    async with opened(hub, after=third.position) as (intact, _):
        await engine.inbound(ref="po-3", sku="X", location="north", qty=1)
        resumed = await asyncio.wait_for(anext(intact), WAIT_S)

    assert gap == Gap((g,))  # po-1 is gone: the reader must reload
    assert rest.body["ref"] == "po-2"
    # Resuming inside what the stream still holds hears of no gap.
    assert isinstance(resumed, FeedEvent) and resumed.body["ref"] == "po-3"


async def test_a_malformed_entry_is_skipped_live_and_when_read_back(
    engine: StockEngine, hub: FeedHub
) -> None:
    async with opened(hub) as (stream, start):
        key = engine.keys.events(engine.keys.group_of("X"))
        await engine.client.xadd(key, {"t": "inbound", "rows": "not json"})
        await engine.inbound(ref="po-1", sku="X", location="north", qty=1)
        live = await next_event(stream)

    # One entry a page: the page holding only the bad entry must not end the group.
    back = [e async for e in read_range(engine.client, engine.keys, start, live.position, page=1)]

    assert live.body["ref"] == "po-1"
    assert [e.body["ref"] for e in back] == ["po-1"]


async def test_filter_keeps_only_matching_rows_and_keepalives_advance_past_the_rest(
    engine: StockEngine, hub: FeedHub
) -> None:
    flt = Filter(frozenset({"B"}), frozenset({"south"}))
    async with opened(hub, flt, keepalive_seconds=0.2) as (stream, start):
        await engine.inbound(ref="po-1", sku="B", location="north", qty=1000)
        await engine.inbound(ref="po-2", sku="A", location="south", qty=5)
        await engine.request_transfer(
            transfer_id="tr-1", sku="B", from_location="north", to_location="south", qty=100
        )
        await engine.ship_transfer("tr-1")
        await engine.receive_transfer("tr-1")

        received = await next_event(stream)
        assert received.body["type"] == "transfer_receive"
        assert received.body["transfer_id"] == "tr-1"
        assert received.body["rows"] == [
            {
                "sku": "B",
                "location": "south",
                "delta_on_hand": 100,
                "delta_locked": 0,
                "on_hand": 100,
                "locked": 0,
                "safety_stock": 0,
                "available": 100,
            }
        ]
        await engine.inbound(ref="po-3", sku="A", location="south", qty=5)
        await asyncio.sleep(0.05)
        keepalive = await asyncio.wait_for(anext(stream), WAIT_S)

    assert isinstance(keepalive, KeepAlive)
    assert keepalive.position > received.position > start
    # Resuming from the keep-alive's position does not re-read the skipped inbound.
    async with opened(hub, Filter(), after=keepalive.position) as (stream, _):
        await engine.inbound(ref="po-4", sku="A", location="south", qty=1)
        assert (await next_event(stream)).body["ref"] == "po-4"


async def test_a_reader_that_stops_reading_does_not_hold_back_others_and_loses_nothing(
    engine: StockEngine,
) -> None:
    hub = FeedHub(engine.client, engine.keys, queue_limit=5, block_ms=200)
    async with opened(hub) as (slow, _), opened(hub) as (fast, _):
        for i in range(40):
            await engine.inbound(ref=f"po-{i}", sku=f"s-{i % 7}", location="north", qty=1)
        fast_got = await events(fast, 40)  # the slow reader has read nothing meanwhile
        assert any(s.lagged for s in hub.subscriptions)
        assert all(len(s.queue) <= 5 for s in hub.subscriptions)

        slow_got = await events(slow, 40)

    assert [e.position for e in slow_got] == [e.position for e in fast_got]
    assert sorted(e.body["ref"] for e in slow_got) == sorted(f"po-{i}" for i in range(40))
    assert hub.subscribers == 0


async def test_the_reading_task_runs_only_while_someone_listens(
    engine: StockEngine, hub: FeedHub
) -> None:
    async with opened(hub):
        assert hub.running
    assert not hub.running and hub.subscribers == 0
    async with opened(hub) as (stream, _):
        await engine.inbound(ref="po-1", sku="X", location="north", qty=1)
        assert (await next_event(stream)).body["ref"] == "po-1"


def test_positions_encode_parse_and_bound_each_stream() -> None:
    pos = Position(1_800_000_000_123, 7, 2)

    assert Position.parse(pos.encode()) == pos
    assert pos.first_after(3) == (1_800_000_000_124, 0)  # earlier group: next millisecond
    assert pos.first_after(7) == (1_800_000_000_123, 3)
    assert pos.first_after(9) == (1_800_000_000_123, 0)  # later group: same millisecond
    assert pos.last_within(3) == (1_800_000_000_123, MAX_SEQ)
    assert pos.last_within(7) == (1_800_000_000_123, 2)
    assert pos.last_within(9) == (1_800_000_000_122, MAX_SEQ)
    assert Position.end_of(5) == Position(5, ALL_GROUPS, MAX_SEQ)


@pytest.mark.parametrize("bad", ["", "abc", "1-2", "1-2-3-4", "-1-2-3", "1-99999999999-0"])
def test_a_malformed_last_event_id_is_a_validation_error(bad: str) -> None:
    with pytest.raises(ValidationError):
        Position.parse(bad)


def test_a_rowless_event_about_one_sku_reaches_a_filter_on_that_sku() -> None:
    """A limit or a bundle definition changes no level (no rows), but it is about one
    SKU, at every location: a reader following that SKU sees it, whatever locations it
    follows; a reader following other SKUs does not."""
    pos = Position(1_800_000_000_123, 7, 2)
    limit = FeedEvent(pos, {"type": "limit", "sku": "cap", "rows": []})
    bundle = FeedEvent(pos, {"type": "bundle", "bundle": "kit", "rows": []})

    def only(skus: list[str], locations: list[str]) -> Filter:
        return Filter(frozenset(skus), frozenset(locations))

    assert limit.view(only(["cap"], [])) == limit.body
    assert limit.view(only(["cap"], ["north"])) == limit.body
    assert bundle.view(only(["kit", "other"], [])) == bundle.body
    assert bundle.view(only([], ["north"])) == bundle.body
    assert limit.view(only(["other"], [])) is None
    assert bundle.view(only(["other"], ["north"])) is None


async def test_incoming_stock_and_pre_orders_are_seen_with_their_content(
    engine: StockEngine, hub: FeedHub
) -> None:
    due = 1_800_000_000_000
    async with opened(hub) as (stream, _):
        await engine.incoming.put(
            ref="po-1", sku="phoneA", location="north", qty=3, expected_at=due
        )
        await engine.set_preorder_limit(sku="phoneA", location="north", limit=3)
        await engine.reserve(order_id="o-1", lines=[LineRequest("phoneA", 2)])
        await engine.incoming.receive("po-1")

        created, limit, reserve, received = await events(stream, 4)

    assert (created.body["type"], created.body["reason"]) == ("incoming", "incoming_create")
    assert created.body["incoming"] == {
        "sku": "phoneA",
        "location": "north",
        "qty": 3,
        "expected_at": due,
        "status": "open",
        "received_qty": 0,
    }
    assert (limit.body["reason"], limit.body["preorder_limit"]) == ("preorder_limit", 3)
    assert reserve.body["preorders"] == [
        {"sku": "phoneA", "location": "north", "qty": 2, "expected_at": due}
    ]
    assert received.body["incoming"]["status"] == "received"
    assert received.body["preorders"] == [
        {"order_id": "o-1", "location": "north", "qty": 2, "expected_at": due, "state": "locked"}
    ]
    assert [(r["delta_on_hand"], r["delta_locked"]) for r in received.body["rows"]] == [(3, 2)]
