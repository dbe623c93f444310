"""Multi-line orders take turns per API process (`api/inflight.LineQueue`), so that twenty
clients' 100-line orders do not hold every one-line checkout behind their script calls."""

from __future__ import annotations

import asyncio

import pytest

from inventory_cache.api.inflight import LineQueue


async def place(
    queue: LineQueue, lines: int, log: list[str], name: str, done: asyncio.Event
) -> None:
    async with queue.turn(lines):
        log.append(f"{name} in")
        await done.wait()
    log.append(f"{name} out")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_orders_beyond_the_capacity_wait_their_turn_in_arrival_order() -> None:
    queue = LineQueue(100)
    log: list[str] = []
    gates = {name: asyncio.Event() for name in ("a", "b", "c")}
    tasks = [
        asyncio.create_task(place(queue, 60, log, "a", gates["a"])),
        asyncio.create_task(place(queue, 60, log, "b", gates["b"])),
        asyncio.create_task(place(queue, 30, log, "c", gates["c"])),  # would fit: waits anyway
    ]
    await settle()
    assert log == ["a in"] and queue.placing == 60

    gates["a"].set()
    await settle()
    assert log == ["a in", "a out", "b in", "c in"] and queue.placing == 90

    gates["b"].set()
    gates["c"].set()
    await asyncio.gather(*tasks)
    assert queue.placing == 0


async def test_one_line_orders_never_wait_and_an_order_larger_than_the_capacity_goes_alone() -> (
    None
):
    queue = LineQueue(100)
    log: list[str] = []
    big_done, small_done = asyncio.Event(), asyncio.Event()
    big = asyncio.create_task(place(queue, 250, log, "big", big_done))
    await settle()
    assert log == ["big in"]

    async with queue.turn(1):
        log.append("one-line")
    small = asyncio.create_task(place(queue, 2, log, "small", small_done))
    await settle()
    assert log == ["big in", "one-line"]  # the 2-line order waits for the big one

    big_done.set()
    small_done.set()
    await asyncio.gather(big, small)
    assert log == ["big in", "one-line", "big out", "small in", "small out"]


async def test_a_waiting_order_whose_client_left_gives_its_place_to_the_next() -> None:
    queue = LineQueue(100)
    log: list[str] = []
    first_done, third_done = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(place(queue, 80, log, "first", first_done))
    second = asyncio.create_task(place(queue, 80, log, "second", asyncio.Event()))
    third = asyncio.create_task(place(queue, 10, log, "third", third_done))
    await settle()

    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await settle()
    assert log == ["first in", "third in"]  # no longer behind the one that left

    first_done.set()
    third_done.set()
    await asyncio.gather(first, third)
    assert queue.placing == 0


async def test_with_no_capacity_set_nothing_waits() -> None:
    queue = LineQueue(0)
    async with queue.turn(10_000):
        assert queue.placing == 0
