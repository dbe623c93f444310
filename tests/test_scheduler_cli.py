"""`inventory-cache scheduler` as a process: it sweeps, and hands its lease on at SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

from inventory_cache.engine import StockEngine
from inventory_cache.lease import Lease
from inventory_cache.models import LineRequest
from tests.support.api import CLI, server_env
from tests.support.postgres import fresh_database
from tests.support.services import make_settings


async def test_scheduler_process_expires_reservations_and_stops_cleanly(
    real_redis: Any, prefix: str
) -> None:
    engine = StockEngine(real_redis, make_settings(prefix))
    await engine.mark_ready()
    await engine.inbound(ref="in", sku="X", location="north", qty=20)
    for i in range(20):
        await engine.reserve(order_id=f"o{i}", lines=[LineRequest("X", 1)], ttl_seconds=1)
    with fresh_database() as url:
        env = server_env(
            prefix, url, INVENTORY_EXPIRY_SWEEP_SECONDS="0.2", INVENTORY_LEASE_SECONDS="3"
        )
        proc = await asyncio.create_subprocess_exec(
            CLI, "scheduler", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            for _ in range(150):
                if (await engine.availability("X")).available == 20:
                    break
                await asyncio.sleep(0.1)
            available = (await engine.availability("X")).available
            leader = await real_redis.hget(f"{prefix}:{{lease}}:scheduler", "owner")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)

    assert available == 20
    assert (await engine.get_reservation("o7")).status == "expired"
    assert leader is not None
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"stopped" in err
    successor = Lease(real_redis, prefix=prefix, name="scheduler", ttl_ms=1000, owner="next")
    assert await successor.acquire()  # released at shutdown: no wait for it to run out
    assert successor.token == 2
