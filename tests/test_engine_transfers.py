"""Transfers found by id for as long as they are open, however long that is.

The index `{h}:ti:{id}` (the transfer id's group) says which SKU's group holds the
transfer. It has no expiry while the transfer is requested or in transit, and expires
one retention window after the transfer was received or cancelled.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InvalidState
from tests.support.clock import ManualClock
from tests.support.services import make_settings

# Redis expires keys on its own clock: the engine's clock starts a retention window ago,
# less this margin, so an index that expired with the window would be gone after it.
MARGIN_MS = 300


async def _engine(backend: Any, prefix: str) -> tuple[StockEngine, ManualClock, int]:
    settings = make_settings(prefix)
    retention_ms = settings.finished_retention_seconds * 1000
    clock = ManualClock(int(time.time() * 1000) - retention_ms + MARGIN_MS)
    eng = StockEngine(backend, settings, clock=clock)
    await eng.mark_ready()
    await eng.inbound(ref="po", sku="B", location="north", qty=10)
    return eng, clock, retention_ms


async def _past_the_window(clock: ManualClock) -> None:
    await asyncio.sleep(2 * MARGIN_MS / 1000)
    clock.ms = int(time.time() * 1000)


async def test_an_open_transfer_outlives_the_retention_window_then_its_index_expires(
    backend: Any, prefix: str
) -> None:
    eng, clock, retention_ms = await _engine(backend, prefix)
    index = eng.keys.transfer_index("tr-slow")
    await eng.request_transfer(
        transfer_id="tr-slow", sku="B", from_location="north", to_location="south", qty=4
    )
    assert await backend.pttl(index) == -1

    await _past_the_window(clock)

    assert (await eng.get_transfer("tr-slow")).status == "requested"
    assert (await eng.ship_transfer("tr-slow")).status == "in_transit"
    assert await backend.pttl(index) == -1
    await _past_the_window(clock)
    assert (await eng.receive_transfer("tr-slow")).status == "received"
    ttl = await backend.pttl(index)
    assert retention_ms - 60_000 < ttl <= retention_ms
    # A replayed receive answers the same and does not push the expiry back.
    clock.ms += 30_000
    assert (await eng.receive_transfer("tr-slow")).replayed
    assert await backend.pttl(index) <= ttl
    assert (await eng.stock("B")).locations["south"].on_hand == 4


async def test_a_cancelled_transfer_closes_its_index(backend: Any, prefix: str) -> None:
    eng, clock, retention_ms = await _engine(backend, prefix)
    index = eng.keys.transfer_index("tr-c")
    await eng.request_transfer(
        transfer_id="tr-c", sku="B", from_location="north", to_location="south", qty=4
    )
    await _past_the_window(clock)

    assert (await eng.cancel_transfer("tr-c")).status == "cancelled"
    assert 0 < await backend.pttl(index) <= retention_ms
    assert (await eng.stock("B")).locations["north"].locked == 0


async def test_a_refused_cancel_leaves_the_index_open(backend: Any, prefix: str) -> None:
    eng, _, _ = await _engine(backend, prefix)
    index = eng.keys.transfer_index("tr-s")
    await eng.request_transfer(
        transfer_id="tr-s", sku="B", from_location="north", to_location="south", qty=4
    )
    await eng.ship_transfer("tr-s")

    with pytest.raises(InvalidState):
        await eng.cancel_transfer("tr-s")

    assert await backend.pttl(index) == -1
