"""The worker's lag, measured from the streams: what the `ledger` group has not
acknowledged (delivered but pending, and not yet delivered) and the age of the oldest."""

from __future__ import annotations

from typing import Any

from inventory_cache import lag
from inventory_cache.engine import StockEngine
from tests.support.clock import ManualClock
from tests.support.services import make_settings


async def test_lag_counts_pending_and_undelivered_entries_and_the_oldest_age(
    real_redis: Any, prefix: str
) -> None:
    engine = StockEngine(real_redis, make_settings(prefix), clock=ManualClock())
    await engine.mark_ready()
    client = engine.client
    stream = engine.keys.events(engine.keys.group_of("A"))
    assert await lag.measure(engine) == lag.Lag(0, 0.0)  # no stream, no group: nothing

    first = await client.xadd(stream, {"t": "x"}, id="1000-0")  # an entry made long ago
    await client.xadd(stream, {"t": "x"})
    await client.xadd(stream, {"t": "x"})
    await client.xgroup_create(stream, lag.GROUP, id="0")
    undelivered = await lag.measure(engine)
    await client.xreadgroup(lag.GROUP, "w", {stream: ">"}, count=2)
    pending = await lag.measure(engine)
    await client.xack(stream, lag.GROUP, first)
    await client.xreadgroup(lag.GROUP, "w", {stream: ">"})
    recent = await lag.measure(engine)
    for entry_id, _ in await client.xrange(stream):
        await client.xack(stream, lag.GROUP, entry_id)

    assert undelivered.entries == 3 and undelivered.seconds > 1_000_000
    assert pending.entries == 3 and pending.seconds > 1_000_000
    assert recent.entries == 2 and 0 <= recent.seconds < 60
    assert await lag.measure(engine) == lag.Lag(0, 0.0)
