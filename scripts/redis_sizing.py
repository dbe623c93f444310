#!/usr/bin/env python
"""Bytes of Redis memory per unit of the service's state, measured on a private Redis.

Starts its own `redis-server` on a free loopback port (scripts/local_cluster.py), runs the real
scripts through `StockEngine` with the production key layout (prefix `inv`, 256 slot
groups), and reads `used_memory` (INFO memory) before and after each phase:

- SKU-location: stock hashes as warmup writes them, `--locations` locations per SKU;
- stream entry: `--n` inbound movements, then the streams trimmed to nothing (what the
  worker does once PostgreSQL committed them): the memory freed per entry;
- movement idempotency record: what the inbound movements left once their entries went;
- active reservation (one line): order index, part, expiry-index entry (stream trimmed);
- further line of an active reservation: the same with three lines, per added line;
- finished order in the window: the one-line orders shipped (index and part kept for
  the retention window), streams trimmed;
- Idempotency-Key record: an HTTP answer of a reservation stored for the key's TTL.

Prints one JSON object (bytes per unit, and the raw deltas). Cheap at the default size;
larger `--n` and `--skus` give steadier figures (jemalloc allocates in size classes, so
small runs read a little high or low):

    .venv/bin/python scripts/redis_sizing.py                      # seconds
    .venv/bin/python scripts/redis_sizing.py --skus 1000000 --n 1000000   # the full size
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Sequence
from typing import Any

import orjson
from local_cluster import LocalServers

from inventory_cache.connection import make_async_redis
from inventory_cache.engine import StockEngine, wall_clock_ms
from inventory_cache.models import LineRequest
from inventory_cache.script_calls import restore_stock
from inventory_cache.settings import Settings

CHUNK = 2000
# A stored Idempotency-Key answer of a one-line reservation, as the API stores it.
IDEM_BODY = orjson.dumps(
    {
        "order_id": "order-0000000001",
        "status": "active",
        "expires_at": "2026-11-28T12:00:00.000Z",
        "lines": [{"sku": "SKU-0000001", "qty": 1, "location": "north"}],
    }
)


async def _in_chunks(calls: Sequence[Awaitable[Any]]) -> None:
    for i in range(0, len(calls), CHUNK):
        await asyncio.gather(*calls[i : i + CHUNK])


async def _used(client: Any) -> int:
    await asyncio.sleep(0.05)
    info = await client.info("memory")
    return int(info["used_memory"])


async def _trim_streams(engine: StockEngine) -> None:
    await engine.batcher.many(
        [(None, ("XTRIM", engine.keys.events(g), "MAXLEN", 0)) for g in engine.keys.all_groups()]
    )


async def measure(url: str, skus: int, n: int, locations: int) -> dict[str, Any]:
    settings = Settings(redis_url=url, location_priority="north")
    client = make_async_redis(settings)
    engine = StockEngine(client, settings)
    locs = ["north", *(f"store-{i:03d}" for i in range(1, locations))]
    try:
        await engine.mark_ready()
        deltas: dict[str, int] = {}
        base = await _used(client)

        levels = orjson.dumps([[loc, "100000", "0", "0"] for loc in locs])
        await _in_chunks(
            [
                engine.run(
                    restore_stock(stock=engine.keys.stock(f"SKU-{i:07d}"), version=1, levels=levels)
                )
                for i in range(skus)
            ]
        )
        after_stock = await _used(client)
        deltas["stock"] = after_stock - base

        await _in_chunks(
            [
                engine.inbound(
                    ref=f"po-{i:09d}", sku=f"SKU-{i % skus:07d}", location="north", qty=1
                )
                for i in range(n)
            ]
        )
        with_stream = await _used(client)
        await _trim_streams(engine)
        after_moves = await _used(client)
        deltas["stream"] = with_stream - after_moves
        deltas["op_records"] = after_moves - after_stock

        def order(i: int, lines: int) -> Awaitable[Any]:
            return engine.reserve(
                order_id=f"order-{lines}-{i:010d}",
                lines=[LineRequest(f"SKU-{(i * 7 + k * 131) % skus:07d}", 1) for k in range(lines)],
            )

        await _in_chunks([order(i, 1) for i in range(n)])
        await _trim_streams(engine)
        after_active = await _used(client)
        deltas["active_orders"] = after_active - after_moves

        m = max(1, n // 4)
        await _in_chunks([order(i, 3) for i in range(m)])
        await _trim_streams(engine)
        after_three = await _used(client)
        deltas["three_line_orders"] = after_three - after_active

        await _in_chunks([engine.ship(f"order-1-{i:010d}") for i in range(n)])
        await _trim_streams(engine)
        after_ship = await _used(client)
        deltas["finished_orders"] = after_ship - after_moves - deltas["three_line_orders"]

        ttl_ms = 86_400_000
        await _in_chunks(
            [
                engine.batcher.command(
                    "SET",
                    engine.keys.http_idempotency("k3y1d", f"{i:040x}"),
                    b"%040x 201 application/json\n%s" % (i, IDEM_BODY),
                    "PX",
                    ttl_ms,
                )
                for i in range(n)
            ]
        )
        after_idem = await _used(client)
        deltas["idempotency_key_records"] = after_idem - after_ship

        one_line = deltas["active_orders"] / n
        per_added_line = (deltas["three_line_orders"] / m - one_line) / 2
        return {
            "measured_at_ms": wall_clock_ms(),
            "skus": skus,
            "locations_per_sku": locations,
            "n": n,
            "bytes": {
                "sku_location": round(deltas["stock"] / (skus * locations)),
                "stream_entry": round(deltas["stream"] / n),
                "movement_idempotency_record": round(deltas["op_records"] / n),
                "active_reservation_one_line": round(one_line),
                "active_reservation_added_line": round(per_added_line),
                "finished_order_in_window": round(deltas["finished_orders"] / n),
                "idempotency_key_record": round(deltas["idempotency_key_records"] / n),
            },
            "baseline_used_memory": base,
            "deltas": deltas,
        }
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=10_000, help="SKUs in the catalogue")
    parser.add_argument("--locations", type=int, default=2, help="locations per SKU")
    parser.add_argument("--n", type=int, default=10_000, help="movements, orders, records")
    args = parser.parse_args()
    servers = LocalServers(1)
    servers.start()
    try:
        result = asyncio.run(measure(servers.url, args.skus, args.n, args.locations))
    finally:
        servers.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
