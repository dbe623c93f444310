"""The background half: expiry sweep, scheduled reconciliation, alerts and notifications."""

from __future__ import annotations

from inventory_cache.engine import StockEngine


async def sweep_expired(
    engine: StockEngine, *, limit_per_group: int = 100, max_passes: int = 1000
) -> int:
    """Release every reservation past its TTL; returns how many parts this call expired.

    `expire_due` takes at most `limit_per_group` due orders of each group per pass, so a
    backlog (a scheduler that was down) drains in passes; it stops when a pass expires
    nothing, which also ends the loop when the due entries left are not ours to expire
    (another sweeper or a ship got there first).
    """
    total = 0
    for _ in range(max_passes):
        n = await engine.expire_due(limit_per_group=limit_per_group)
        total += n
        if n == 0:
            break
    return total
